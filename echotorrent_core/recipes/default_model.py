"""The default model's recipe: `echotorrent recipe default-model --out RUN [--quick] [--jobs N]` trains, from an
empty folder and with the training foundation's stages only, the small model set the package ships, evaluates it
with the independent metrics and packages it. Every step is resumable: rerun the same command after a crash or
Ctrl-C; finished steps (same config and inputs) are skipped, an interrupted stage resumes from its checkpoint.

Steps (folders under RUN; commands run in RUN with relative paths, all recorded in the manifest):
1. `data`: SynthTalk clips (`synthtalk_plan.DEFAULT_PLAN`, data seed 0): train split of the calm / expressive /
   singing domains at 128 px; held-out split (held-out identities; voices never used in training: flite awb,
   espeak RP f4, the formant soprano and the real LibriVox recordings) -> `data/`. `drift`: long (60 s) held-out
   clips -> `drift/` (evaluation only).
2. `audio_encoder` (configs/audio_encoder.toml): a wav2vec2-layout encoder (4 layers x 128) trained from scratch
   to classify the ground-truth phone at every video frame from a softmax mix of its layers, over all training
   voices, with gain / noise augmentation. In: `data/` audio + phone_segments. Out:
   `audio_encoder/export/audio_encoder.safetensors`; held-out phone accuracy vs the majority class in its log.
3. `vae` (configs/vae.toml), in parallel with 2 when `--jobs` >= 2 and both stages' threads fit the CPUs: a small
   Wan-layout causal VAE (z 16, 8x spatial / 4x temporal) pretrained on single whole 128 px frames (its image path:
   the portrait's encoding every generated frame is conditioned on) with L1 + SSIM + Laplacian detail + KL, the
   posterior std started small (`initial_log_variance`). Out: `vae/export/vae.safetensors`.
3b. `vae_video` (configs/vae_video.toml, `echotorrent train vae`): that VAE inflated into a video VAE (`inflate_init`:
   it starts as the per-frame image VAE) and trained, encoder and decoder, on whole 128 px 25-frame windows in the
   bounded streaming layout (each latent encoded after at most 2 latents' frames; latent 0 alone, then chunks of 3
   decoded after their 2 previous latents) with a motion-weighted L1 (`losses/reconstruction.py`, `motion_l1`) so
   the mouth, a few hundred of 16384 pixels, is not averaged away; the export records both bounds. Why bounded:
   with the whole causal history neither half of a VAE trained on short windows is stationary (measured: stream
   latents drift 46-66% RMS from fresh-window ones, decoded frames fall to 8-9 dB after frame 9;
   `scripts/vae_long_stream_check.py`). Out: `vae_video/export/vae.safetensors`: the encoder (latents and their
   statistics) the DiTs train on.
3e. `mouth_map` (`training/mouth_map.py`): builds the DiTs' cache of `data/` (`vae_video` latents + audio
   features, once, into `avatar_data/`) and measures on its training latents which latent cells follow the mouth
   (per-cell R^2 of SynthTalk's mouth_open, fit on half the training clips, scored on the other half). Out:
   `mouth_map/mouth_map.safetensors`.
3f. `vae_mouth` (configs/vae_mouth.toml, `echotorrent train vae`): `vae_video`'s decoder alone (encoder frozen, so
   the latents stay bit for bit) trained on with an L1 + Laplacian term weighted by the mouth map spread over its
   pixels (`map_l1`), decoded with one latent of context (13 decoded frames per 12-frame chunk instead of 17). Out:
   `vae_mouth/export/vae.safetensors`: the VAE the bundle ships and every evaluation decodes with.
4. `teacher` (configs/teacher.toml): a bidirectional audio-conditioned Wan DiT (dim 192 x 6 blocks) trained by flow
   matching on the streaming layout (portrait latent clean at t = 0, 6 latent frames), text / audio dropout for
   CFG, the loss weighted per cell by the motion and by the mouth map (`loss_map`: half the loss on the ~16 mouth
   cells of 256; without it the teacher learns no lip sync). In: the cache, the mouth map. Out:
   `teacher/export/teacher.safetensors`.
5. `student` (configs/student.toml): the causal few-step student, initialised from the teacher, regressed (ODE
   regression, CausVid) onto teacher trajectories under audio CFG at its own 2 timesteps, on the block-causal
   chunk layout it streams with (chunk 3, window 6, sink 1; noisy and clean context chunks). One DiT pass per step,
   no CFG at inference. Out: `student/export/student.safetensors` + `student_stream.json`.
3d. `evaluate_vae` (`vae_reconstruction.py`): the held-out clips through the `vae_mouth` VAE alone (stream encode
   and decode), measured like the models -> `eval/vae_metrics.json`: the ceiling the DiTs cannot pass, logged
   before they train.
6. `sync_expert` (run before 3d): the shipped sync expert (`metrics/weights/`) when present, else trained here on
   `data/`'s train split (ground truth only, never on generated video).
7. `bundle`: `bundle/` = student as `dit.safetensors`, the `vae_mouth` VAE, the audio encoder, `bundle.json`
   (128 x 128, the student's stream settings).
8. `evaluate` (`evaluation.py`): the bundle streams every held-out clip and the drift clips; sync expert and
   landmark sync vs a shuffled-audio control, identity, detail, drift, real-time factor -> `eval/metrics.json`.
   `evaluate_teacher` (`teacher_evaluation.py`): the bidirectional teacher samples the same clips with the
   windowed generator (many Euler steps, the student's distillation CFG, its training window) and the same
   instruments measure them -> `eval/teacher_metrics.json` (one drift clip; `scripts/default_model_table.py`
   prints the teacher / student table).
9. `bundle/manifest.json`: commands, configs (copied), stage wall times, data seed and clip ids, metrics (student
   `metrics`, teacher `metrics_teacher`), sha256 of every file, asset sources and licences.
`--quick` is the same recipe with the `*_quick.toml` configs and a handful of 64 px clips (CI, minutes).
`--threads T`: torch threads per training process (default $OMP_NUM_THREADS, else CPUs / parallel stages; use 1 on
a machine shared with other work, where oversubscribed threads make a step many times slower).

On GPUs the recipe is the same commands: the stages take `[trainer] device` (auto = CUDA when present), bf16
autocast and `torchrun` (DDP / FSDP2) for larger presets; raise `batch_size`, data (clips per domain) and the DiT /
VAE widths in the TOML files; data rendering and the metrics stay on the CPU (run more `--jobs`).
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..training import __file__ as _training_init
from .runner import RecipeRun, sha256_file, sha256_json
from .synthtalk_plan import DEFAULT_PLAN, QUICK_PLAN, DataPlan, write_clips

CONFIG_DIR = Path(_training_init).resolve().parent / "configs"
STAGES = ("audio_encoder", "vae", "vae_video", "vae_mouth", "teacher", "student")
STAGE_COMMANDS = {"vae_video": "vae", "vae_mouth": "vae"}  # stages run by another stage's trainer (own config)
IMAGE_VAE = "vae/export/vae.safetensors"  # pretrained on single frames
LATENT_VAE = "vae_video/export/vae.safetensors"  # inflated, context-bounded, trained in the streaming layout: the
# latents the DiTs train on
SHIPPED_VAE = "vae_mouth/export/vae.safetensors"  # LATENT_VAE's encoder, its decoder fine-tuned on the mouth
AUDIO_ENCODER = "audio_encoder/export/audio_encoder.safetensors"
TEACHER = "teacher/export/teacher.safetensors"
STUDENT = "student/export/student.safetensors"
MOUTH_MAP = "mouth_map/mouth_map.safetensors"  # where the mouth is on the latent grid: the teacher's loss map
STAGE_SETS = {
    "audio_encoder": ["stage.data=data"],
    "vae": ["stage.data=data", "stage.cache_dir=vae_image_frames"],
    "teacher": ["stage.data=data", f"stage.vae={LATENT_VAE}", f"stage.audio_encoder={AUDIO_ENCODER}",
                "stage.cache_dir=avatar_data", f"stage.loss_map={MOUTH_MAP}"],
    "student": ["stage.data=data", f"stage.vae={LATENT_VAE}", f"stage.audio_encoder={AUDIO_ENCODER}",
                f"stage.teacher={TEACHER}", "stage.cache_dir=avatar_data"],
    "vae_video": ["stage.data=data", f"stage.init={IMAGE_VAE}", "stage.cache_dir=vae_frames"],
    "vae_mouth": ["stage.data=data", f"stage.init={LATENT_VAE}", "stage.cache_dir=vae_frames",
                  f"stage.loss_map={MOUTH_MAP}"],
}
STAGE_INPUTS = {"audio_encoder": ["data/index.json"], "vae": ["data/index.json"],
                "teacher": ["data/index.json", LATENT_VAE, AUDIO_ENCODER, MOUTH_MAP],
                "student": ["data/index.json", LATENT_VAE, AUDIO_ENCODER, TEACHER],
                "vae_video": ["data/index.json", IMAGE_VAE],
                "vae_mouth": ["data/index.json", LATENT_VAE, MOUTH_MAP]}
QUICK_SYNC_STEPS = 20


def copy_configs(run: RecipeRun, quick: bool) -> dict[str, str]:
    """The stage configs pinned in `RUN/configs/` (copied from the package on the first run, then reused, so a
    resumed run keeps its configs); returns {stage: path relative to RUN}."""
    folder = run.root / "configs"
    folder.mkdir(exist_ok=True)
    chosen = {}
    for stage in STAGES:
        source = CONFIG_DIR / f"{stage}{'_quick' if quick else ''}.toml"
        target = folder / f"{stage}.toml"
        if not target.is_file():
            shutil.copyfile(source, target)
        elif target.read_bytes() != source.read_bytes():
            run.log(f"note: {target} (pinned at the first run) differs from {source}; delete it to take the new one")
        chosen[stage] = f"configs/{stage}.toml"
    return chosen


def _threads(parallel: int, threads: int | None) -> int:
    """Torch threads per training process: `threads`, else $OMP_NUM_THREADS when set, else CPUs // `parallel`
    (on a machine shared with other jobs, more threads than free cores slow a step down many times)."""
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    return max(1, threads or (os.cpu_count() or 1) // parallel)


def side_by_side_stages(jobs: int, threads: int | None) -> int:
    """How many of the first two stages (audio encoder, image VAE) run at once: 2 when `jobs` >= 2 and their
    threads fit the CPUs side by side, else 1 (two 2-thread stages on 2 cores oversubscribe them: the audio encoder's
    step measured 1 s with the image VAE beside it against 0.26 s alone)."""
    if jobs < 2:
        return 1
    return 2 if 2 * _threads(2, threads) <= (os.cpu_count() or 1) else 1


def _data_steps(run: RecipeRun, plan: DataPlan, jobs: int) -> None:
    for name, specs in (("data", plan.specs()), ("drift", plan.drift_specs())):
        key = sha256_json([spec.__dict__ for spec in specs])
        run.step(name, key, lambda n=name, s=specs: [write_clips(run.root / n, s, jobs, run.log)], folder=name)


def _sync_expert(run: RecipeRun, quick: bool) -> Path:
    from ..metrics.sync_expert import SHIPPED_WEIGHTS
    from ..metrics.sync_expert_recipe import train_and_save
    from ..metrics.train_sync import SyncTrainingConfig

    if SHIPPED_WEIGHTS.is_file():
        run.log(f"sync expert: the shipped {SHIPPED_WEIGHTS} (sha256 {sha256_file(SHIPPED_WEIGHTS)[:12]})")
        return SHIPPED_WEIGHTS
    config = SyncTrainingConfig(steps=QUICK_SYNC_STEPS) if quick else SyncTrainingConfig()
    out = run.root / "sync_expert" / "sync_expert.safetensors"
    key = sha256_json({"config": config.__dict__, "data": sha256_file(run.root / "data/index.json")})

    def action() -> list[Path]:
        train_and_save(run.root / "data", out, config, run.root / "metrics_cache",
                       "echotorrent recipe default-model (step sync_expert)", progress=False)
        return [out, out.with_suffix(".json")]

    run.step("sync_expert", key, action, folder="sync_expert")
    return out


def _mouth_map_step(run: RecipeRun, configs: dict[str, str], threads: int | None) -> Path:
    """Build the DiTs' cache of `data/` (the teacher's data settings, `avatar_data/`) and measure where the mouth
    is on its latent grid (`training/mouth_map.py`) -> `mouth_map/mouth_map.safetensors` + `report.json`."""
    from ..metrics.report import write_json
    from ..training.config import load_config
    from ..training.mouth_map import measure_mouth_map, write_mouth_map
    from ..training.stages.avatar_stage import AvatarSamples
    from ..training.stages.teacher import TeacherConfig

    sets = [s for s in STAGE_SETS["teacher"] if not s.startswith("stage.loss_map=")]
    inputs = ["data/index.json", LATENT_VAE, AUDIO_ENCODER]
    key = sha256_json({"config": sha256_file(run.root / configs["teacher"]), "sets": sets,
                       "inputs": {path: sha256_file(run.root / path) for path in inputs}})

    def action() -> list[Path]:
        torch.set_num_threads(_threads(1, threads))
        absolute = [f"{s.split('=', 1)[0]}={run.root / s.split('=', 1)[1]}" for s in sets]
        config = load_config(run.root / configs["teacher"], TeacherConfig, absolute).stage
        cache = AvatarSamples(config, run.root / "teacher", torch.device("cpu")).cache_folder()
        weights, report = measure_mouth_map(cache, config.latent_frames)
        run.log(f"mouth_map: max cell R^2 {report['max_r2']:.3f}, {report['cells_over_0.3']} cells over 0.3")
        return [write_mouth_map(run.root / MOUTH_MAP, weights, report),
                write_json(run.root / "mouth_map" / "report.json", report)]

    run.step("mouth_map", key, action, folder="mouth_map")
    return run.root / MOUTH_MAP


def _bundle_step(run: RecipeRun, size: int) -> Path:
    import json

    from .bundle import write_bundle

    stream = json.loads((run.root / "student/export/student_stream.json").read_text())
    key = sha256_json({"files": [sha256_file(run.root / p) for p in (STUDENT, SHIPPED_VAE, AUDIO_ENCODER)],
                      "size": size})
    bundle = run.root / "bundle"
    run.step("bundle", key, lambda: write_bundle(bundle, run.root / STUDENT, run.root / SHIPPED_VAE,
                                                 run.root / AUDIO_ENCODER, stream, size))
    return bundle


def _evaluate_step(run: RecipeRun, bundle: Path, expert_path: Path, limit: int | None, threads: int | None) -> Path:
    from ..metrics.report import write_json
    from ..metrics.sync_expert import load_sync_expert
    from ..pipeline import bundle_paths, load_bundle
    from .evaluation import evaluate_bundle

    out = run.root / "eval"
    files = [bundle / "dit.safetensors", bundle / "vae.safetensors", bundle / "audio_encoder.safetensors",
             bundle / "bundle.json", run.root / "data/index.json", run.root / "drift/index.json", expert_path]
    key = sha256_json({"files": [sha256_file(p) for p in files], "limit": limit})

    def action() -> list[Path]:
        torch.set_num_threads(_threads(1, threads))
        for videos in ("heldout", "drift"):  # this step's own videos; eval/ also holds the other evaluations
            shutil.rmtree(out / videos, ignore_errors=True)
        paths = bundle_paths(bundle)
        model = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])
        metrics = evaluate_bundle(model, bundle, run.root / "data", run.root / "drift", out,
                                  load_sync_expert(expert_path), limit)
        return [write_json(out / "metrics.json", metrics)]

    run.step("evaluate", key, action)
    return out / "metrics.json"


def _evaluate_teacher_step(run: RecipeRun, configs: dict[str, str], expert_path: Path, quick: bool,
                           limit: int | None, threads: int | None) -> Path:
    """The teacher on the student's clips, windowed, with the student's instruments (`teacher_evaluation.py`):
    videos in `eval/teacher/`, metrics in `eval/teacher_metrics.json`."""
    from ..metrics.report import write_json
    from ..metrics.sync_expert import load_sync_expert
    from .teacher_evaluation import (
        QUICK_TEACHER_STEPS,
        TEACHER_DRIFT_CLIPS,
        TEACHER_STEPS,
        evaluate_teacher,
        teacher_sampling,
    )

    out = run.root / "eval" / "teacher"
    sampling = teacher_sampling(run.root / configs["teacher"], run.root / configs["student"],
                                QUICK_TEACHER_STEPS if quick else TEACHER_STEPS,
                                {stage: STAGE_SETS[stage] for stage in ("teacher", "student")})
    files = [TEACHER, SHIPPED_VAE, AUDIO_ENCODER, "data/index.json", "drift/index.json"]
    key = sha256_json({"files": [sha256_file(run.root / p) for p in files] + [sha256_file(expert_path)],
                       "sampling": sampling.to_dict(), "limit": limit, "drift_limit": TEACHER_DRIFT_CLIPS})

    def action() -> list[Path]:
        torch.set_num_threads(_threads(1, threads))
        shutil.rmtree(out, ignore_errors=True)
        metrics = evaluate_teacher(run.root / TEACHER, run.root / SHIPPED_VAE, run.root / AUDIO_ENCODER, sampling,
                                   run.root / "data", run.root / "drift", out, load_sync_expert(expert_path), limit,
                                   TEACHER_DRIFT_CLIPS)
        return [write_json(run.root / "eval" / "teacher_metrics.json", metrics)]

    run.step("evaluate_teacher", key, action)
    return run.root / "eval" / "teacher_metrics.json"


def _evaluate_vae_step(run: RecipeRun, expert_path: Path, limit: int | None, threads: int | None) -> Path:
    """The VAE ceiling (`vae_reconstruction.py`): the held-out clips encoded and stream-decoded by the VAE the DiTs
    train on, through the student's instruments -> `eval/vae_metrics.json` (videos in `eval/vae/`)."""
    from ..metrics.report import write_json
    from ..metrics.sync_expert import load_sync_expert
    from .vae_reconstruction import evaluate_vae_ceiling

    out, result = run.root / "eval" / "vae", run.root / "eval" / "vae_metrics.json"
    files = [run.root / SHIPPED_VAE, run.root / "data/index.json", expert_path]
    key = sha256_json({"files": [sha256_file(p) for p in files], "limit": limit})

    def action() -> list[Path]:
        torch.set_num_threads(_threads(1, threads))
        shutil.rmtree(out, ignore_errors=True)
        metrics = evaluate_vae_ceiling(run.root / SHIPPED_VAE, run.root / "data", out, load_sync_expert(expert_path),
                                       limit)
        heldout, control = metrics["heldout"], metrics["shuffled_audio"]
        value = lambda row, key: row.get(key, float("nan"))
        run.log(f"VAE ceiling: reconstructions Sync-C {value(heldout, 'sync_c'):.2f} (shuffled audio "
                f"{value(control, 'sync_c'):.2f}), landmark C {value(heldout, 'landmark_c'):.3f} (shuffled "
                f"{value(control, 'landmark_c'):.3f}), PSNR {value(heldout, 'psnr'):.1f} dB")
        return [write_json(result, metrics)]

    run.step("evaluate_vae", key, action)
    return result


def stage_evaluations(run: RecipeRun) -> dict[str, dict]:
    """The last held-out evaluation record of every stage's log (e.g. the audio encoder's phone accuracy)."""
    from ..training.logging_jsonl import read_log

    found = {}
    for stage in STAGES:
        records = [r for r in read_log(run.root / stage / "log.jsonl") if r.get("kind") == "eval"] \
            if (run.root / stage / "log.jsonl").is_file() else []
        if records:
            found[stage] = records[-1]
    return found


def _manifest(run: RecipeRun, bundle: Path, plan: DataPlan, configs: dict[str, str], metrics: Path,
              teacher_metrics: Path, vae_metrics: Path, expert: Path, command: list[str]) -> Path:
    import json

    from .bundle import write_manifest

    state = run.state()["steps"]
    stages = [{"name": name, "command": state[name]["command"], "wall_seconds": state[name]["seconds"],
               "exports": state[name]["outputs"]} for name in STAGES]
    other = {name: {"wall_seconds": record["seconds"], "outputs": record["outputs"]}
             for name, record in state.items() if name not in STAGES}
    content = {
        "name": "echotorrent default model" + (" (quick recipe)" if plan is QUICK_PLAN else ""),
        "command": " ".join(command), "cwd_note": "stage commands run inside the recipe's output folder",
        "data_seed": plan.seed,
        "data": {"plan": {k: v for k, v in plan.__dict__.items()},
                 "clips": [s.clip_id for s in plan.specs()], "drift_clips": [s.clip_id for s in plan.drift_specs()],
                 "index_sha256": sha256_file(run.root / "data/index.json")},
        "stages": stages, "other_steps": other,
        "total_wall_seconds": round(sum(r["seconds"] for r in state.values()), 1),
        "stage_heldout": stage_evaluations(run),
        "sync_expert": {"path": str(expert), "sha256": sha256_file(expert)},
        "metrics": json.loads(metrics.read_text()),
        "metrics_teacher": json.loads(teacher_metrics.read_text()),
        "metrics_vae": json.loads(vae_metrics.read_text()),
    }
    return write_manifest(bundle, [run.root / path for path in configs.values()], content)


def run_default_model(out: str | Path, quick: bool = False, jobs: int = 2, eval_limit: int | None = None,
                      command: list[str] | None = None, threads: int | None = None) -> Path:
    """Run (or resume) the whole recipe into `out`; returns the bundle folder (`out/bundle`)."""
    run = RecipeRun(out)
    plan = QUICK_PLAN if quick else DEFAULT_PLAN
    command = command or ["echotorrent", "recipe", "default-model", "--out", str(run.root)] + \
        (["--quick"] if quick else []) + ["--jobs", str(jobs)]
    run.log(f"recipe default-model{' (quick)' if quick else ''} in {run.root}, {jobs} job(s), "
            f"{os.cpu_count()} CPU(s), python {sys.version.split()[0]}, torch {torch.__version__}")
    configs = copy_configs(run, quick)
    _data_steps(run, plan, jobs)
    train = lambda stage, count: run.train_step(STAGE_COMMANDS.get(stage, stage), configs[stage], stage, STAGE_SETS[stage],
                                                  STAGE_INPUTS[stage], count)
    parallel = side_by_side_stages(jobs, threads)
    with ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(train, stage, _threads(parallel, threads)) for stage in ("audio_encoder", "vae")]
        for future in futures:
            future.result()
    train("vae_video", _threads(1, threads))  # fixes the latents (context-bounded encode) the DiTs train on
    expert = _sync_expert(run, quick)
    _mouth_map_step(run, configs, threads)
    train("vae_mouth", _threads(1, threads))  # the decoder only: the latents stay vae_video's
    vae_metrics = _evaluate_vae_step(run, expert, eval_limit, threads)
    train("teacher", _threads(1, threads))
    train("student", _threads(1, threads))
    bundle = _bundle_step(run, plan.size)
    metrics = _evaluate_step(run, bundle, expert, eval_limit, threads)
    teacher_metrics = _evaluate_teacher_step(run, configs, expert, quick, eval_limit, threads)
    manifest = _manifest(run, bundle, plan, configs, metrics, teacher_metrics, vae_metrics, expert, command)
    run.log(f"finished: bundle {bundle}, manifest {manifest}")
    return bundle

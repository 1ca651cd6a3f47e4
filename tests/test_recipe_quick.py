"""The default-model recipe end to end at CI size (`--quick`): SynthTalk data, the four stages, evaluation (the
student's, and the windowed teacher's on the same clips) and the bundle; the bundle loads and streams, its
manifest's hashes match the files, the comparison table reads the run, and a rerun skips every step."""

from __future__ import annotations

import json
import math

import torch

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.cli import main
from echotorrent_core.data.cache_dataset import CachedWindows
from echotorrent_core.data.clip_folder import scan_clip_folder
from echotorrent_core.media import read_video_frames
from echotorrent_core.pipeline import bundle_defaults, bundle_paths, generate_to_file, load_bundle
from echotorrent_core.recipes.bundle import verify_manifest
from echotorrent_core.recipes.default_model import STAGES
from echotorrent_core.recipes.evaluation import bundle_settings
from echotorrent_core.recipes.runner import RecipeRun
from echotorrent_core.recipes.teacher_evaluation import QUICK_TEACHER_STEPS
from echotorrent_core.training.losses.cell_map import load_cell_map
from scripts.default_model_table import main as print_table


def check_teacher_metrics(run, manifest: dict, capsys) -> None:
    """The windowed teacher's evaluation beside the student's: same clips, more passes, and the table reads both."""
    teacher, student = manifest["metrics_teacher"], manifest["metrics"]
    assert teacher == json.loads((run / "eval" / "teacher_metrics.json").read_text())
    window = teacher["sampling"]["window"]
    assert (window["window_frames"], window["motion_frames"], window["steps"]) == (17, 1, QUICK_TEACHER_STEPS)
    assert teacher["heldout"]["clips"] == student["heldout"]["clips"] == 2 and len(teacher["drift"]["clips"]) == 1
    assert [c["clip"] for c in teacher["speed"]["clips"]] == [c["clip"] for c in student["speed"]["clips"]]
    assert [c["frames"] for c in teacher["speed"]["clips"]] == [c["frames"] for c in student["speed"]["clips"]]
    speed = teacher["speed"]
    assert all(math.isfinite(speed[k]) and speed[k] > 0
               for k in ("seconds", "first_chunk_seconds", "real_time_factor", "passes_per_frame"))
    assert speed["passes_per_frame"] > student["speed"]["passes_per_frame"]
    assert all(math.isfinite(v) for v in teacher["heldout"].values())
    assert all("error" in row or math.isfinite(row["sync_c"]) for row in teacher["clips"])
    capsys.readouterr()
    assert print_table([str(run)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 8 and rows[3].startswith("| teacher (2 clips") and rows[5].startswith("| VAE reconstruction")
    assert rows[3].rstrip(" |").endswith(f"{speed['passes_per_frame']:.2f}")


def check_vae_metrics(run, manifest: dict) -> None:
    """The VAE ceiling: the same held-out clips reconstructed by the bundle's VAE, with the shuffled-audio control."""
    vae, student = manifest["metrics_vae"], manifest["metrics"]
    assert vae == json.loads((run / "eval" / "vae_metrics.json").read_text())
    assert vae["heldout"]["clips"] == student["heldout"]["clips"] == 2
    assert [c["clip"] for c in vae["speed"]["clips"]] == [row["clip"] for row in student["clips"]]
    assert all("error" in row or math.isfinite(row["psnr"]) for row in vae["clips"])
    assert "VAE ceiling: reconstructions Sync-C" in (run / "recipe.log").read_text()


def check_shipped_vae(run, bundle, manifest) -> None:
    """The bundle's VAE is vae_mouth's: vae_video's encoder and latent statistics bit for bit (the DiTs' latents),
    a decoder trained on with the mouth map, decoded with one latent of context."""
    shipped, latent = load_vae(bundle / "vae.safetensors")[0], load_vae(run / "vae_video/export/vae.safetensors")[0]
    encoder = lambda n: n.startswith(("encoder.", "conv1."))
    latent_state = latent.state_dict()
    assert all(torch.equal(v, latent_state[n]) for n, v in shipped.state_dict().items() if encoder(n))
    assert any(not torch.equal(v, latent_state[n]) for n, v in shipped.state_dict().items() if not encoder(n))
    assert (shipped.cfg.latents_mean, shipped.cfg.latents_std) == (latent.cfg.latents_mean, latent.cfg.latents_std)
    assert shipped.cfg.decode_context_latents == 1
    command = next(stage["command"] for stage in manifest["stages"] if stage["name"] == "vae_mouth")
    assert "--set=stage.loss_map=mouth_map/mouth_map.safetensors" in command


def test_quick_recipe_trains_a_bundle_that_streams_and_resumes(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["recipe", "default-model", "--out", str(run), "--quick", "--jobs", "1", "--threads", "1"]) == 0
    bundle = run / "bundle"
    assert verify_manifest(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [stage["name"] for stage in manifest["stages"]] == list(STAGES)
    assert all(stage["wall_seconds"] > 0 and stage["command"][:2] == ["echotorrent", "train"]
               for stage in manifest["stages"])
    assert manifest["data_seed"] == 0 and manifest["model_bytes"] <= 40 * 2**20
    assert any(row["voice name(s)"] == "`librivox`" for row in manifest["assets"]["speech"])
    assert "eval/majority_acc" in manifest["stage_heldout"]["audio_encoder"]
    assert manifest["metrics"]["heldout"]["clips"] == 2 and "worst_real_time_factor" in manifest["metrics"]["speed"]
    check_teacher_metrics(run, manifest, capsys)
    check_vae_metrics(run, manifest)
    teacher_command = next(stage["command"] for stage in manifest["stages"] if stage["name"] == "teacher")
    assert "--set=stage.loss_map=mouth_map/mouth_map.safetensors" in teacher_command
    latents = CachedWindows(run / "avatar_data" / "avatar_cache", split="train")[0]["latents"]
    assert load_cell_map(run / "mouth_map" / "mouth_map.safetensors").shape == latents.shape[-2:]
    check_shipped_vae(run, bundle, manifest)

    defaults = bundle_defaults(bundle)
    assert (defaults["height"], defaults["steps"], defaults["guidance"]) == (64, 2, "single")
    paths = bundle_paths(bundle)
    model = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])
    clip = next(e for e in scan_clip_folder(run / "data") if e.split == "heldout")
    portrait = run / "eval" / "heldout" / "portraits" / f"{clip.id}.png"
    result = generate_to_file(model, portrait, clip.video, tmp_path / "out.mp4", 64, 64, bundle_settings(bundle))
    assert result.chunks >= 2 and result.frames == clip.frames
    frames, _, audio, _ = read_video_frames(tmp_path / "out.mp4")
    assert tuple(frames.shape) == (clip.frames, 64, 64, 3) and audio is not None

    log_before = (run / "recipe.log").read_text()
    assert main(["recipe", "default-model", "--out", str(run), "--quick", "--jobs", "1", "--threads", "1"]) == 0
    rerun = (run / "recipe.log").read_text()[len(log_before):]
    assert all(f"skip {name}:" in rerun for name in ("data", "drift", *STAGES, "bundle", "evaluate", "evaluate_teacher",
                                                      "evaluate_vae", "mouth_map"))
    assert "start " not in rerun


def test_a_step_reruns_when_its_key_changes_and_its_old_folder_is_moved_aside(tmp_path) -> None:
    run = RecipeRun(tmp_path)
    calls = []

    def action(text: str):
        def write():
            calls.append(text)
            (tmp_path / "work").mkdir(exist_ok=True)
            path = tmp_path / "work" / "out.txt"
            path.write_text(text)
            return [path]
        return write

    first = run.step("work", "key-1", action("a"), folder="work")
    assert run.step("work", "key-1", action("b"), folder="work") == first and calls == ["a"]
    second = run.step("work", "key-2", action("c"), folder="work")
    assert calls == ["a", "c"] and second["key"] == "key-2"
    assert (tmp_path / "work.stale-1" / "out.txt").read_text() == "a"

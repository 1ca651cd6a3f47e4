"""One-off (stop 18): adopt the two VAE experiments of /work/exp as the recipe's new `vae` and `vae_video` steps of
/work/runs/default_model, so the recipe resumes from them instead of training them again (the session had no time
for both). The experiments ran with configs identical to echotorrent_core/training/configs/vae.toml and
vae_video.toml except for their paths (out_dir, data, cache_dir: the recipe's --out / --set replace those), on the
same data/ folder, with the trainer the recipe calls; vae_video's init was the frame experiment's export, byte for
byte the file adopted as vae/export/vae.safetensors. The superseded steps (vae, vae_decoder, vae_motion of the
2026-12-03 recipe) move to RUN/superseded-2026-12-03/ with a copy of the old state.

Wall times recorded: vae 2992 s (460 s to cut the single-frame cache, then 2532 s of training and export), vae_video
1918 s (its 25-frame window cache was already there, cut by the old vae_decoder step, ~4 min).
usage: adopt_vae_stages.py RUN EXP"""
import shutil
import sys
from pathlib import Path

from echotorrent_core.recipes.default_model import CONFIG_DIR, STAGE_INPUTS, STAGE_SETS
from echotorrent_core.recipes.runner import RecipeRun, _now, sha256_file, sha256_json

run, exp = RecipeRun(sys.argv[1]), Path(sys.argv[2])
old = run.root / "superseded-2026-12-03"
old.mkdir(exist_ok=False)
shutil.copyfile(run.state_path, old / "recipe_state.json")
for name in ("vae", "vae_decoder", "vae_motion", "vae_motion.stale-1"):
    if (run.root / name).exists():
        (run.root / name).rename(old / name)
    for extra in (run.root / "configs" / f"{name}.toml", run.root / "logs" / f"{name}.log"):
        if extra.exists():
            extra.rename(old / f"{extra.parent.name}-{extra.name}")


def drop(state: dict) -> None:
    for name in ("vae", "vae_decoder", "vae_motion"):
        state["steps"].pop(name, None)
        state["attempts"].pop(name, None)


run._update(drop)
for stage, source, seconds in (("vae", "vae_frame128", 2992.0), ("vae_video", "vae_video", 1918.0)):
    folder = run.root / stage
    folder.mkdir()
    for part in ("checkpoints", "export"):
        shutil.copytree(exp / source / part, folder / part)
    for part in ("log.jsonl", "loss.png"):
        shutil.copyfile(exp / source / part, folder / part)
    shutil.copyfile(exp / f"{source}.log", run.root / "logs" / f"{stage}.log")
    config = f"configs/{stage}.toml"
    shutil.copyfile(CONFIG_DIR / f"{stage}.toml", run.root / config)
    command = ["echotorrent", "train", "vae", "--config", config, "--out", stage, "--resume",
               *(f"--set={value}" for value in STAGE_SETS[stage])]
    key = sha256_json({"command": command, "config": sha256_file(run.root / config),
                       "inputs": {path: sha256_file(run.root / path) for path in STAGE_INPUTS[stage]}})
    outputs = {str(p.relative_to(run.root)): sha256_file(p) for p in sorted((folder / "export").iterdir())}
    record = {"key": key, "seconds": seconds, "command": command, "finished": _now(), "outputs": outputs,
              "adopted_from": str(exp / source)}
    run._update(lambda s, r=record, n=stage: (s["steps"].__setitem__(n, r),
                                              s["attempts"].__setitem__(n, {"key": r["key"], "seconds": seconds})))
    run.log(f"adopted {stage} from {exp / source} ({seconds:.0f} s measured there; same config but for paths)")
cache = run.root / "vae_image_frames"
if not cache.exists():
    shutil.copytree(exp / "frames1", cache)

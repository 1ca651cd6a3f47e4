"""One-off (2026-12-07, evening): adopt the experiment run EXP (= `echotorrent train vae --config
echotorrent_core/training/configs/vae_mouth.toml --out EXP` + the recipe's `--set`s, run inside RUN) as the recipe's
finished `vae_mouth` step of RUN, so the recipe resumes at `evaluate_vae` instead of training the decoder again.
The experiment ran the package's vae_mouth.toml of this commit byte for byte, with the trainer the recipe calls and
the recipe's inputs (RUN's data, `vae_video` export and mouth map, all checked by hash below); only `--out` differs.
usage: adopt_vae_mouth.py RUN EXP SECONDS"""
import shutil
import sys
from pathlib import Path

from echotorrent_core.recipes.default_model import CONFIG_DIR, STAGE_INPUTS, STAGE_SETS, copy_configs
from echotorrent_core.recipes.runner import RecipeRun, _now, sha256_file, sha256_json

run, exp, seconds = RecipeRun(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
stage = "vae_mouth"
folder = run.root / stage
if folder.exists():
    raise SystemExit(f"{folder} exists: adopt into a run without it")
configs = copy_configs(run, quick=False)
config = configs[stage]
assert (run.root / config).read_bytes() == (CONFIG_DIR / f"{stage}.toml").read_bytes()
folder.mkdir()
for part in ("checkpoints", "export"):
    shutil.copytree(exp / part, folder / part)
for part in ("log.jsonl", "loss.png"):
    if (exp / part).is_file():
        shutil.copyfile(exp / part, folder / part)
(run.root / "logs").mkdir(exist_ok=True)
shutil.copyfile(exp.parent / f"{exp.name}.log", run.root / "logs" / f"{stage}.log")
command = ["echotorrent", "train", "vae", "--config", config, "--out", stage, "--resume",
           *(f"--set={value}" for value in STAGE_SETS[stage])]
key = sha256_json({"command": command, "config": sha256_file(run.root / config),
                   "inputs": {path: sha256_file(run.root / path) for path in STAGE_INPUTS[stage]}})
outputs = {str(p.relative_to(run.root)): sha256_file(p) for p in sorted((folder / "export").iterdir())}
entry = {"key": key, "seconds": seconds, "command": command, "finished": _now(), "outputs": outputs,
         "adopted_from": str(exp)}
run._update(lambda s: (s["steps"].__setitem__(stage, entry),
                       s["attempts"].__setitem__(stage, {"key": key, "seconds": seconds})))
run.log(f"adopted {stage} from {exp} ({seconds:.0f} s measured there; the package config, the recipe's inputs)")

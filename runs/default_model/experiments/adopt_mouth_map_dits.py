"""One-off (2026-12-07): set up the recipe folder RUN for the mouth-map recipe from this record and the experiment
runs of EXP, so the recipe resumes at `bundle` instead of training the DiTs again (the session had no time for both).

1. The steps the new recipe did not change (audio_encoder, vae, vae_video, evaluate_vae) are taken from this
   record (`runs/default_model/`: their state entries, pinned configs, exports, logs), as they ran 2026-12-01..03 on
   the same data (data/index.json hash 8f042174..., checked) -- RUN already holds `data` and `drift`, rendered again.
2. `mouth_map` runs here (the recipe's own step) and must equal EXP/mouth_map.safetensors, the map the experiment
   teacher trained with (`experiments/mouth_map.py`, same measurement).
3. `teacher` and `student` are adopted from EXP/teacher_c1 and EXP/student_c1: they ran with the package's
   teacher.toml / student.toml of this commit but for their paths (the experiment teacher: the previous teacher.toml
   with `--steps 2000 --set stage.loss_map=EXP/mouth_map.safetensors --set stage.loss_map_weighting=1.0`, which is
   the new teacher.toml), with the trainer the recipe calls; the student's teacher is byte for byte the adopted
   teacher. Wall times recorded as measured there (1 thread for the teacher, beside another 1-thread job).
usage: adopt_mouth_map_dits.py RUN EXP TEACHER_SECONDS STUDENT_SECONDS"""
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file

from echotorrent_core.recipes.default_model import (
    CONFIG_DIR,
    STAGE_INPUTS,
    STAGE_SETS,
    _mouth_map_step,
    copy_configs,
)
from echotorrent_core.recipes.runner import RecipeRun, _now, sha256_file, sha256_json

RECORD = Path(__file__).resolve().parents[1]
run, exp = RecipeRun(sys.argv[1]), Path(sys.argv[2])
seconds = {"teacher": float(sys.argv[3]), "student": float(sys.argv[4])}
record_state = json.loads((RECORD / "recipe_state.json").read_text())
assert sha256_file(run.root / "data/index.json") == record_state["steps"]["data"]["outputs"]["data/index.json"]

for stage in ("audio_encoder", "vae", "vae_video"):
    (run.root / stage / "export").mkdir(parents=True, exist_ok=True)
    for part in ("export", "log.jsonl"):
        source = RECORD / stage / part
        if source.is_dir():
            shutil.copytree(source, run.root / stage / part, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copyfile(source, run.root / stage / part)
    shutil.copyfile(RECORD / "configs" / f"{stage}.toml", run.root / "configs" / f"{stage}.toml")
(run.root / "eval").mkdir(exist_ok=True)
shutil.copyfile(RECORD / "eval" / "vae_metrics.json", run.root / "eval" / "vae_metrics.json")
for stage in ("teacher", "student"):
    shutil.copyfile(CONFIG_DIR / f"{stage}.toml", run.root / "configs" / f"{stage}.toml")
run._update(lambda s: [s["steps"].__setitem__(n, record_state["steps"][n]) or
                       s["attempts"].__setitem__(n, {"key": record_state["steps"][n]["key"],
                                                     "seconds": record_state["steps"][n]["seconds"]})
                       for n in ("audio_encoder", "vae", "vae_video", "evaluate_vae")])
run.log("adopted audio_encoder, vae, vae_video, evaluate_vae from runs/default_model (2026-12-01..03, same data)")

configs = copy_configs(run, quick=False)
mouth_map = _mouth_map_step(run, configs, 2)
assert load_file(mouth_map)["map"].equal(load_file(exp / "mouth_map.safetensors")["map"]), "the map differs"

for stage, source in (("teacher", "teacher_c1"), ("student", "student_c1")):
    folder = run.root / stage
    if folder.exists():
        raise SystemExit(f"{folder} exists: adopt into a run without it")
    folder.mkdir()
    for part in ("checkpoints", "export"):
        shutil.copytree(exp / source / part, folder / part)
    for part in ("log.jsonl", "loss.png"):
        shutil.copyfile(exp / source / part, folder / part)
    (run.root / "logs").mkdir(exist_ok=True)
    shutil.copyfile(exp / f"{source}.out", run.root / "logs" / f"{stage}.log")
    config = configs[stage]
    command = ["echotorrent", "train", stage, "--config", config, "--out", stage, "--resume",
               *(f"--set={value}" for value in STAGE_SETS[stage])]
    key = sha256_json({"command": command, "config": sha256_file(run.root / config),
                       "inputs": {path: sha256_file(run.root / path) for path in STAGE_INPUTS[stage]}})
    outputs = {str(p.relative_to(run.root)): sha256_file(p) for p in sorted((folder / "export").iterdir())}
    entry = {"key": key, "seconds": seconds[stage], "command": command, "finished": _now(), "outputs": outputs,
             "adopted_from": str(exp / source)}
    run._update(lambda s, r=entry, n=stage: (s["steps"].__setitem__(n, r),
                                             s["attempts"].__setitem__(n, {"key": r["key"], "seconds": r["seconds"]})))
    run.log(f"adopted {stage} from {exp / source} ({seconds[stage]:.0f} s measured there; same config but for paths)")

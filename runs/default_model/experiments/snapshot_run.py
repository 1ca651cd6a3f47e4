"""Copy what a later machine needs to resume a recipe run into a folder small enough to commit: the pinned
configs, `recipe.log`, `logs/`, every stage's `log.jsonl`, the finished steps' small outputs (under 8 MB each; not
the data steps' index files, whose clips stay behind, so the data is rendered again and its hash checked) and
`recipe_state.json` without the attempts of unfinished steps (their checkpoints are not copied, so a resumed run
starts them again and must not count their time twice). Steps whose outputs are not copied rerun there.
usage: snapshot_run.py RUN OUT"""
import json
import shutil
import sys
from pathlib import Path

run, out = Path(sys.argv[1]), Path(sys.argv[2])
LIMIT = 8 * 2**20
RENDERED = ("data", "drift")
out.mkdir(parents=True, exist_ok=True)
state = json.loads((run / "recipe_state.json").read_text())
state["attempts"] = {name: attempt for name, attempt in state["attempts"].items() if name in state["steps"]}
copied = []
for name, record in state["steps"].items():
    if name in RENDERED:
        continue
    for path in record["outputs"]:
        source = run / path
        if source.stat().st_size <= LIMIT:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / path)
            copied.append(path)
for source in [run / "recipe.log", *run.glob("configs/*.toml"), *run.glob("logs/*.log"), *run.glob("*/log.jsonl")]:
    (out / source.relative_to(run)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / source.relative_to(run))
(out / "recipe_state.json").write_text(json.dumps(state, indent=1))
print(f"{len(copied)} outputs copied:", ", ".join(copied))

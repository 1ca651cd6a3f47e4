"""Resumable recipe steps: each step runs once per key (a hash of its config and inputs), its wall time is measured
and its outputs hashed, and everything is logged to `RUN/recipe.log`.

State lives in `RUN/recipe_state.json` (written atomically): `steps` holds the record of every finished step
(`key`, `seconds` summed over all attempts with that key, `outputs` {path relative to RUN: sha256}, `command`,
`finished`); `attempts` holds the key and seconds so far of a step that started. A rerun skips a step whose record
has the same key and whose outputs all exist; a step that started with another key has its folder moved aside
(`NAME.stale-K`) so its checkpoints are never resumed under a changed config. Training stages run as
`echotorrent train` subprocesses (`train_step`) with `--resume`, so an interrupted stage continues from the
trainer's latest checkpoint. Thread-safe: independent steps may run in parallel threads.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

STATE_FILE = "recipe_state.json"
LOG_FILE = "recipe.log"


class RecipeInterrupted(RuntimeError):
    """A step was stopped by Ctrl-C / SIGTERM; its checkpoint is kept and a rerun resumes it."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RecipeRun:
    """The run folder of a recipe: log, state, and the steps run in it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / LOG_FILE
        self.state_path = self.root / STATE_FILE
        self._lock = threading.Lock()

    def log(self, message: str) -> None:
        line = f"{_now()} {message}"
        with self._lock, open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(line, file=sys.stderr, flush=True)

    def state(self) -> dict:
        if not self.state_path.is_file():
            return {"steps": {}, "attempts": {}}
        return json.loads(self.state_path.read_text())

    def _update(self, change: Callable[[dict], None]) -> None:
        with self._lock:
            state = self.state()
            change(state)
            partial = self.state_path.with_suffix(".json.tmp")
            partial.write_text(json.dumps(state, indent=1))
            partial.replace(self.state_path)

    def finished(self, name: str, key: str) -> dict | None:
        """The record of step `name` when it finished with `key` and all its outputs still exist."""
        record = self.state()["steps"].get(name)
        if record is None or record["key"] != key:
            return None
        if not all((self.root / path).is_file() for path in record["outputs"]):
            return None
        return record

    def step(self, name: str, key: str, action: Callable[[], list[Path]], command: list[str] | None = None,
             folder: str | None = None) -> dict:
        """Run `action` (returns its output files) unless step `name` already finished with `key`."""
        record = self.finished(name, key)
        if record is not None:
            self.log(f"skip {name}: finished {record['finished']} in {record['seconds']:.0f} s (same config)")
            return record
        attempt = self.state()["attempts"].get(name)
        if attempt is not None and attempt["key"] != key:  # another config: its time is not this step's
            if folder and (self.root / folder).exists():
                stale = self._stale_name(folder)
                (self.root / folder).rename(stale)
                self.log(f"{name}: its config changed; moved the old {folder}/ to {stale.name}/ (not resumed)")
            attempt = None
        before = attempt["seconds"] if attempt is not None else 0.0
        self._update(lambda s: s["attempts"].__setitem__(name, {"key": key, "seconds": before}))
        self.log(f"start {name}" + (f" (resuming; {before:.0f} s spent before)" if before else ""))
        start = time.perf_counter()
        try:
            outputs = action()
        finally:
            spent = before + time.perf_counter() - start
            self._update(lambda s: s["attempts"].__setitem__(name, {"key": key, "seconds": spent}))
        record = {"key": key, "seconds": round(spent, 1), "command": command, "finished": _now(),
                  "outputs": {str(Path(p).resolve().relative_to(self.root)): sha256_file(p) for p in outputs}}
        self._update(lambda s: s["steps"].__setitem__(name, record))
        self.log(f"done {name} in {spent:.0f} s: {', '.join(record['outputs']) or 'no files'}")
        return record

    def _stale_name(self, folder: str) -> Path:
        k = 1
        while (self.root / f"{folder}.stale-{k}").exists():
            k += 1
        return self.root / f"{folder}.stale-{k}"

    def train_step(self, stage: str, config: str, out: str, sets: list[str], inputs: list[str],
                   threads: int) -> dict:
        """Step OUT: `echotorrent train STAGE --config CONFIG --out OUT --resume --set ...` in the run folder (paths
        relative to it); output appended to `logs/OUT.log`. The key hashes the config file, the overrides and the sha256 of
        every input file. Returns the step record (outputs: the files the stage exported)."""
        command = ["echotorrent", "train", stage, "--config", config, "--out", out, "--resume",
                   *(f"--set={value}" for value in sets)]
        key = sha256_json({"command": command, "config": sha256_file(self.root / config),
                           "inputs": {path: sha256_file(self.root / path) for path in inputs}})

        def action() -> list[Path]:
            logs = self.root / "logs"
            logs.mkdir(exist_ok=True)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
            with open(logs / f"{out}.log", "a", encoding="utf-8") as handle:
                handle.write(f"\n$ {' '.join(command)}   # {_now()}, {threads} thread(s)\n")
                handle.flush()
                code = subprocess.call([sys.executable, "-m", "echotorrent_core.cli", *command[1:]], cwd=self.root,
                                       env=env, stdout=handle, stderr=subprocess.STDOUT)
            if code == 130:
                raise RecipeInterrupted(f"stage {stage} was stopped; its checkpoint is kept, rerun to resume")
            if code != 0:
                raise RuntimeError(f"stage {stage} failed (exit {code}); see {logs / f'{out}.log'}; rerun resumes it")
            export = self.root / out / "export"
            return sorted(p for p in export.iterdir() if p.is_file())

        return self.step(out, key, action, command, folder=out)

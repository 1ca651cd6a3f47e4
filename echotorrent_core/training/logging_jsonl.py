"""The run log: one JSON object per line (`OUT/log.jsonl`), mirrored to TensorBoard when asked.

Records carry "step" and "kind" ("train" / "eval"), plus float values such as "loss/generator", "lr/generator",
"grad_norm/generator", "seconds_per_step". On resume the file is cut back to the checkpoint's step, so the log
reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


class RunLog:
    """Append-only JSONL log (rank 0 only), optional TensorBoard scalars under OUT/tensorboard."""

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(tensorboard_dir))

    def truncate_after(self, step: int) -> None:
        """Drop records with a step beyond `step` (the ones a resumed run will write again)."""
        kept = [r for r in read_log(self.path) if r["step"] <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        tmp.replace(self.path)

    def write(self, kind: str, step: int, values: dict[str, float]) -> None:
        record = {"kind": kind, "step": step, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if math.isfinite(float(value)):
                    self._writer.add_scalar(f"{kind}/{key}" if kind != "train" else key, float(value), step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_log(path: str | Path) -> list[dict]:
    """Every complete record of a JSONL log (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records

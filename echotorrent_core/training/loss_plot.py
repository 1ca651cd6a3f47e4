"""Loss curves as a PNG (`OUT/loss.png`), drawn from the JSONL log at every checkpoint (matplotlib, Agg)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def plot_losses(records: list[dict], path: str | Path, title: str = "") -> Path | None:
    """One panel per `loss*` key (train and eval records as two lines), log-scale y when all values are positive;
    written atomically. Returns the path, or None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r if k.startswith("loss")})
    if not keys:
        return None
    path = Path(path)
    figure, axes = plt.subplots(len(keys), 1, figsize=(7, 2.4 * len(keys)), squeeze=False)
    for axis, key in zip(axes[:, 0], keys):
        for kind, style in (("train", "-"), ("eval", "o-")):
            points = [(r["step"], r[key]) for r in records if r.get("kind") == kind and key in r
                      and math.isfinite(r[key])]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, style, label=kind, markersize=3)
        values = [r[key] for r in records if key in r and math.isfinite(r[key])]
        if values and min(values) > 0:
            axis.set_yscale("log")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=90)
    plt.close(figure)
    os.replace(tmp, path)
    return path

"""Plain-text tables of metric rows, and JSON output that never holds NaN or infinity (written as null)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

COLUMNS = (
    ("sync_c", "Sync-C"), ("sync_d", "Sync-D"), ("sync_offset", "off"), ("sync_c_at_zero", "Sync-C@0"),
    ("landmark_c", "LM-C"), ("landmark_c_at_zero", "LM-C@0"), ("landmark_r", "LM-r"), ("landmark_offset", "LM-off"), ("identity_similarity", "ID-sim"),
    ("identity_distance", "ID-dist"), ("identity_drift_per_minute", "ID-drift/min"), ("psnr", "PSNR"),
    ("ssim", "SSIM"), ("laplacian_ratio", "HF-lap"), ("high_band_ratio", "HF-fft"), ("flicker", "flicker"),
    ("colour_drift", "colour"), ("face_found", "face%"),
)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def format_table(rows: list[dict], label: str) -> str:
    """Rows of metric dicts -> aligned text table; `label` names the first column's key."""
    columns = [(key, title) for key, title in COLUMNS if any(key in r for r in rows)]
    header = [label] + [title for _, title in columns]
    body = [[str(r.get(label, ""))] + [_cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, payload: dict) -> Path:
    """Write `payload` as indented JSON atomically (temporary file, then rename); non-finite floats -> null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_finite(payload), indent=2) + "\n")
    os.replace(temporary, path)
    return path

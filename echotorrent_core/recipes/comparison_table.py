"""The teacher / student comparison of the default model (issue 9) as one markdown table, from the recipe's metrics.

Rows: the student (the bundle's streaming sampler), the same student videos heard against shuffled audio, the
teacher (windowed, many steps, CFG: `teacher_evaluation.py`), its shuffled-audio control, the VAE's own
reconstructions of the clips and their control when measured (`vae_reconstruction.py`: the ceiling the DiTs
cannot pass) and the ground-truth clips (what the instruments read on real sync). Columns: sync expert Sync-C / Sync-D / best offset (frames), landmark
sync C / offset, identity similarity to the portrait, detail (FFT high-band energy ratio to the ground truth,
PSNR), generation speed (frames per second over all generated clips, mean real-time factor) and DiT passes per
output frame. A cell the evaluation did not measure (the controls hold only sync metrics; an untrained model's
videos show no face) reads `-`. Then a line on identity drift over the long (60 s) clips both models generated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

QUALITY_COLUMNS = (("Sync-C", "sync_c", 2), ("Sync-D", "sync_d", 2), ("best offset", "sync_offset", 1),
                   ("landmark C", "landmark_c", 3), ("landmark offset", "landmark_offset", 1),
                   ("identity sim.", "identity_similarity", 3), ("HF ratio", "high_band_ratio", 2),
                   ("PSNR dB", "psnr", 1))
SPEED_COLUMNS = ("fps", "real-time factor", "passes / frame")
OFFSET_KEYS = ("sync_offset", "landmark_offset")


def load_metrics(path: str | Path) -> tuple[dict, dict, dict | None]:
    """(student metrics, teacher metrics, VAE reconstruction metrics or None) from a manifest.json, a bundle folder
    holding one, or a recipe run folder (its `bundle/manifest.json`, else `eval/metrics.json` +
    `eval/teacher_metrics.json` (+ `eval/vae_metrics.json`))."""
    path = Path(path)
    candidates = [path] if path.is_file() else [path / "manifest.json", path / "bundle" / "manifest.json"]
    for manifest in candidates:
        if manifest.is_file():
            content = json.loads(manifest.read_text())
            if "metrics_teacher" not in content:
                raise ValueError(f"{manifest} has no `metrics_teacher` (written by the recipe step evaluate_teacher)")
            return content["metrics"], content["metrics_teacher"], content.get("metrics_vae")
    student, teacher = path / "eval" / "metrics.json", path / "eval" / "teacher_metrics.json"
    missing = [str(p) for p in (student, teacher) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"expected a manifest.json, a bundle or a recipe run folder; {path} lacks "
                                f"{', '.join(missing)}")
    vae = path / "eval" / "vae_metrics.json"
    return (json.loads(student.read_text()), json.loads(teacher.read_text()),
            json.loads(vae.read_text()) if vae.is_file() else None)


def _cell(value, digits: int, signed: bool = False) -> str:
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def speed_cells(speed: dict | None) -> list[str]:
    """fps (all generated frames / all generation seconds), mean real-time factor, mean passes per frame."""
    clips = (speed or {}).get("clips", [])
    seconds = sum(clip["seconds"] for clip in clips)
    fps = sum(clip["frames"] for clip in clips) / seconds if seconds > 0 else None
    speed = speed or {}
    return [_cell(fps, 1), _cell(speed.get("real_time_factor"), 2), _cell(speed.get("passes_per_frame"), 2)]


def _row(label: str, means: dict, speed: dict | None) -> list[str]:
    quality = [_cell(means.get(key), digits, key in OFFSET_KEYS) for _, key, digits in QUALITY_COLUMNS]
    return [label, *quality, *(speed_cells(speed) if speed is not None else ["-"] * len(SPEED_COLUMNS))]


def _clips_note(means: dict) -> str:
    failed = means.get("failed", 0)
    return f"{means.get('clips', 0)} clips" + (f", {failed} unreadable (no face found)" if failed else "")


def comparison_rows(student: dict, teacher: dict, vae: dict | None = None) -> list[list[str]]:
    """The table rows (label first, then QUALITY_COLUMNS and SPEED_COLUMNS cells): student, teacher, their
    controls, the VAE reconstructions and their control when `vae` is given, the ground truth."""
    rows = [
        _row(f"student ({_clips_note(student['heldout'])})", student["heldout"], student["speed"]),
        _row("student, shuffled audio", student["shuffled_audio"], None),
        _row(f"teacher ({_clips_note(teacher['heldout'])})", teacher["heldout"], teacher["speed"]),
        _row("teacher, shuffled audio", teacher["shuffled_audio"], None),
    ]
    if vae is not None:
        rows += [_row(f"VAE reconstruction ({_clips_note(vae['heldout'])})", vae["heldout"], None),
                 _row("VAE reconstruction, shuffled audio", vae["shuffled_audio"], None)]
    return rows + [_row("ground truth", student["ground_truth"], None)]


def drift_slopes(metrics: dict, clips: set[str]) -> list[float]:
    """Identity drift per minute of the readable drift clips among `clips`."""
    rows = (metrics.get("drift") or {}).get("clips", [])
    return [row["identity_drift_per_minute"] for row in rows
            if row["clip"] in clips and row.get("identity_drift_per_minute") is not None]


def _drift_clips(metrics: dict) -> dict[str, dict]:
    return {row["clip"]: row for row in (metrics.get("drift") or {}).get("clips", [])}


def drift_line(student: dict, teacher: dict) -> str:
    """Identity similarity slope per minute over the long clips both generated (mean over those clips)."""
    common = set(_drift_clips(student)) & set(_drift_clips(teacher))
    if not common:
        return "Identity drift: no long clip was generated by both models."
    parts = []
    for name, metrics in (("student", student), ("teacher", teacher)):
        slopes = drift_slopes(metrics, common)
        mean = sum(slopes) / len(slopes) if slopes else None
        parts.append(f"{name} {_cell(mean, 4, signed=True)} ({len(slopes)} of {len(common)} readable)")
    seconds = max(clip["frames"] for clip in student["speed"]["clips"] if clip["clip"] in common) \
        / student["settings"]["fps"]
    return (f"Identity drift over {seconds:.0f} s of streaming (identity similarity slope per minute, clips "
            f"{', '.join(sorted(common))}): " + "; ".join(parts) + ".")


def sampling_line(student: dict, teacher: dict) -> str:
    """How each row was sampled."""
    settings, sampling = student.get("settings", {}), teacher.get("sampling", {})
    window, guidance = sampling.get("window", {}), sampling.get("guidance", {})
    return (f"Student: {settings.get('steps')} steps per chunk of {settings.get('chunk_frames')} latent frames, "
            f"block-causal with a KV cache (its cache-writing pass counted). Teacher: {window.get('steps')} Euler steps, "
            f"{guidance.get('mode')} (audio scale {guidance.get('audio_scale')}, {sampling.get('passes_per_step')} "
            f"passes per step), bidirectional windows of {window.get('window_frames')} frames "
            f"({sampling.get('new_frames_per_window')} new).")


def comparison_table(student: dict, teacher: dict, vae: dict | None = None) -> str:
    """The markdown table, the sampling line and the drift line (module docstring)."""
    header = ["", *(title for title, _, _ in QUALITY_COLUMNS), *SPEED_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(student, teacher, vae)]
    return "\n".join(lines + ["", sampling_line(student, teacher), "", drift_line(student, teacher)]) + "\n"

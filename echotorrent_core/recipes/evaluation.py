"""Evaluation of a packaged bundle with the independent metrics (`metrics/`): it streams every held-out clip of the
data folder (portrait = the clip's first frame, sound = its soundtrack, the bundle's own stream settings), then
measures the generated videos against the ground truth; the same videos measured against another clip's sound
(shuffled audio) are the control the sync numbers must stand far above; the long clips give identity drift.

Result (JSON-able): `heldout` (metric means over all held-out clips), `groups` (means per domain and per voice
kind: `voice_train` / `voice_heldout` (voices never used in training) / `voice_librivox` (real recordings)),
`shuffled_audio` (means of the control), `ground_truth` (the instruments on the real clips), `drift` (the long clips), `speed` (seconds per chunk, first chunk,
real-time factor = generation wall time / video duration, measured while generating; model load excluded),
`clips` (per-clip rows) and `frechet_mouth`. `evaluate_generator` does the same for any `Generate` (the windowed
teacher of `teacher_evaluation.py`), so teacher and student are read by the same instruments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.clip_folder import scan_clip_folder
from ..data.synthtalk.domains import DOMAINS
from ..metrics.evaluate import evaluate_measured, frechet_mouth_distance, mouth_features
from ..metrics.measurements import EVAL_FPS, measure_file, measure_video, with_audio
from ..metrics.run_eval import load_truth
from ..metrics.sync_expert import SyncExpert
from ..pipeline import GenerationResult, ModelBundle, bundle_defaults, generate_to_file
from ..streaming import StreamSettings

Generate = Callable[[Path, Path, Path, int, int], GenerationResult]
"""(portrait image, speech / soundtrack file, output mp4, height, width) -> what was written (frames, seconds of
each chunk or window, DiT passes)."""
SYNC_KEYS = ("sync_c", "sync_d", "sync_offset", "landmark_c", "landmark_r", "landmark_offset")
STREAM_KEYS = ("chunk_frames", "window_frames", "sink_frames", "steps", "shift", "solver", "rope_layout")


def bundle_settings(folder: str | Path, seed: int = 0) -> StreamSettings:
    """The StreamSettings a bundle's `bundle.json` asks for (at the evaluation frame rate)."""
    defaults = bundle_defaults(folder)
    return StreamSettings(**{k: defaults[k] for k in STREAM_KEYS if k in defaults}, fps=EVAL_FPS, seed=seed)


def bundle_generator(bundle: ModelBundle, settings: StreamSettings) -> Generate:
    """The Generate of a streaming bundle: `generate_to_file` with `settings` (the student's sampler)."""
    return lambda portrait, audio, path, height, width: generate_to_file(bundle, portrait, audio, path, height,
                                                                         width, settings)


def generate_clips(generate: Generate, fps: float, data: str | Path, out: Path,
                   limit: int | None = None) -> tuple[Path, list[dict]]:
    """Generate the held-out clips of `data` (video at `fps`) into `out/videos/<id>.mp4`; returns the folder and
    per-clip timings."""
    entries = [e for e in scan_clip_folder(data) if e.split != "train"][:limit]
    if not entries:
        raise ValueError(f"{data} has no held-out clips to evaluate on")
    videos, portraits = out / "videos", out / "portraits"
    videos.mkdir(parents=True, exist_ok=True)
    portraits.mkdir(parents=True, exist_ok=True)
    timings = []
    for entry in entries:
        first = load_truth(entry).frames[0]
        portrait = portraits / f"{entry.id}.png"
        Image.fromarray(first).save(portrait)
        height, width = first.shape[:2]
        result = generate(portrait, entry.video, videos / f"{entry.id}.mp4", height, width)
        seconds = sum(result.chunk_seconds)
        timings.append({"clip": entry.id, "frames": result.frames, "chunks": result.chunks,
                        "first_chunk_seconds": result.chunk_seconds[0], "seconds": seconds,
                        "real_time_factor": seconds / (result.frames / fps),
                        "passes_per_frame": result.passes / result.frames})
    return videos, timings


def measure_videos(videos: Path, data: str | Path, expert: SyncExpert) -> dict:
    """Metrics of each generated video against its ground-truth clip (same id in `data`), of the same video against
    the next clip's soundtrack (tiled or cut to length: the shuffled-audio control) and of the ground-truth clip
    itself (what the instruments read on real sync). A video the instruments cannot read (no face found: an
    untrained model) gives a row with `error` instead of failing the run."""
    labels = {e.id: e for e in scan_clip_folder(data)}
    entries = scan_clip_folder(videos)
    truths = [load_truth(labels[entry.id]) for entry in entries]
    rows, shuffled, truth_rows, generated, truth_features = [], [], [], [], []
    for index, (entry, truth) in enumerate(zip(entries, truths)):
        partner = truths[(index + 1) % len(truths)]
        try:
            measured = measure_file(entry.video)
            metrics = evaluate_measured(measured, expert, truth.frames[0], truth.frames)
            samples = measured.audio.shape[1]
            audio = partner.audio.repeat(1, -(-samples // partner.audio.shape[1]))[:, :samples]
            control = evaluate_measured(with_audio(measured, audio, partner.rate), expert, truth.frames[0])
            truth_measured = measure_video(truth.frames, EVAL_FPS, truth.audio, truth.rate)
            truth_metrics = evaluate_measured(truth_measured, expert, truth.frames[0])
        except ValueError as error:
            rows.append({"clip": entry.id, "error": str(error)})
            continue
        rows.append({"clip": entry.id, **metrics})
        shuffled.append({"clip": entry.id, **{k: control[k] for k in SYNC_KEYS}})
        truth_rows.append({"clip": entry.id, **{k: truth_metrics[k] for k in SYNC_KEYS}})
        generated.append(mouth_features(expert, measured))
        truth_features.append(mouth_features(expert, truth_measured))
    frechet = frechet_mouth_distance(generated, truth_features) if generated else None
    return {"clips": rows, "shuffled_audio": shuffled, "ground_truth": truth_rows, "frechet_mouth": frechet}


def _mean(rows: list[dict]) -> dict[str, float]:
    """Means of the numeric metrics over the rows that have them; `clips` counts the rows, `failed` the errors."""
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys} | {
        "clips": len(rows), "failed": sum("error" in r for r in rows)}


def voice_kind(voice: str | None, domain: str | None) -> str:
    """`voice_librivox`, `voice_heldout` (never used by training clips) or `voice_train`."""
    if voice == "librivox":
        return "voice_librivox"
    pool = DOMAINS[domain].train_voices if domain in DOMAINS else ()
    return "voice_train" if voice in pool else "voice_heldout"


def evaluate_bundle(bundle: ModelBundle, folder: str | Path, data: str | Path, drift: str | Path | None,
                    out: str | Path, expert: SyncExpert, limit: int | None = None) -> dict:
    """The full evaluation of the bundle in `folder` (see the module docstring)."""
    settings = bundle_settings(folder)
    return {"settings": asdict(settings)} | evaluate_generator(bundle_generator(bundle, settings), settings.fps, data,
                                                               drift, out, expert, limit)


def evaluate_generator(generate: Generate, fps: float, data: str | Path, drift: str | Path | None, out: str | Path,
                       expert: SyncExpert, limit: int | None = None, drift_limit: int | None = None) -> dict:
    """The evaluation of any generator (module docstring, without `settings`): the first `limit` held-out clips of
    `data` and the first `drift_limit` clips of `drift` (None: all) into `out/heldout` and `out/drift`."""
    out = Path(out)
    videos, timings = generate_clips(generate, fps, data, out / "heldout", limit)
    payload = measure_videos(videos, data, expert)
    labels = {e.id: e for e in scan_clip_folder(data)}
    groups: dict[str, list[dict]] = {}
    for row in payload["clips"]:
        entry = labels[row["clip"]]
        row.update(domain=entry.domain, voice=entry.voice)
        groups.setdefault(entry.domain or "unknown", []).append(row)
        groups.setdefault(voice_kind(entry.voice, entry.domain), []).append(row)
    result = {"heldout": _mean(payload["clips"]),
              "groups": {name: _mean(rows) for name, rows in sorted(groups.items())},
              "shuffled_audio": _mean(payload["shuffled_audio"]), "ground_truth": _mean(payload["ground_truth"]),
              "frechet_mouth": payload["frechet_mouth"], "clips": payload["clips"]}
    if drift is not None:
        drift_videos, drift_timings = generate_clips(generate, fps, drift, out / "drift", drift_limit)
        timings += drift_timings
        drift_rows = measure_videos(drift_videos, drift, expert)["clips"]
        result["drift"] = {"clips": drift_rows, **{k: v for k, v in _mean(drift_rows).items()
                                                   if k.startswith("identity") or k in ("sync_c", "frames")}}
    result["speed"] = {"clips": timings, **{k: v for k, v in _mean(timings).items() if k not in ("frames", "clips", "failed")},
                       "worst_real_time_factor": max(t["real_time_factor"] for t in timings)}
    return result

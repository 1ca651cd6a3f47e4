"""Evaluation runs: a folder of videos (optionally matched by clip id to a ground-truth clip folder), or a model
bundle that first generates every held-out clip from its first frame (the portrait) and its audio.

Output payload: {"clips": [per-video metrics], "summary": {metric: mean}, "frechet_mouth": float | None} where
`frechet_mouth` (the FVD stand-in) compares the generated videos' mouth features with the ground truth's. A video
in which the face mesh finds no face gets `face_found` 0 and an `error` instead of metrics (the summary's
`face_found` is the fraction of videos with a face; the other means are over those videos).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.clip_folder import ClipEntry, scan_clip_folder
from ..media import read_video_frames
from .controls import TruthClip
from .evaluate import evaluate_measured, frechet_mouth_distance, mouth_features
from .face_mesh import NoFaceFoundError
from .measurements import EVAL_FPS, measure_file, measure_video, resample_frames
from .sync_expert import SyncExpert


def load_truth(entry: ClipEntry) -> TruthClip:
    """A clip's frames (resampled to 25 fps) and soundtrack; raises when it has no audio."""
    frames, fps, audio, rate = read_video_frames(entry.video)
    if audio is None:
        raise ValueError(f"ground-truth clip {entry.video} has no audio track")
    return TruthClip(entry.id, resample_frames(frames.numpy(), fps), audio, rate, entry.identity)


def _summary(rows: list[dict]) -> dict[str, float]:
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def evaluate_videos(videos: str | Path, expert: SyncExpert, data: str | Path | None = None,
                    progress: bool = True) -> dict:
    """Metrics of every video in `videos`; a video named like a clip id of `data` is compared with that clip."""
    truths = {e.id: e for e in scan_clip_folder(data)} if data is not None else {}
    rows, generated, truth_features = [], [], []
    for entry in tqdm(scan_clip_folder(videos), desc="evaluating", unit="video", disable=not progress):
        try:
            measured = measure_file(entry.video)
        except NoFaceFoundError as error:  # a failed generation is a result (face_found 0), not a crash
            rows.append({"clip": entry.id, "face_found": 0.0, "error": str(error)})
            continue
        truth_entry = truths.get(entry.id)
        truth = load_truth(truth_entry) if truth_entry is not None else None
        reference = truth.frames[0] if truth is not None else measured.frames[0]
        metrics = evaluate_measured(measured, expert, reference, truth.frames if truth is not None else None)
        rows.append({"clip": entry.id, "face_found": 1.0, **metrics})
        if truth is not None:
            generated.append(mouth_features(expert, measured))
            truth_features.append(mouth_features(expert, measure_video(truth.frames, EVAL_FPS, truth.audio, truth.rate)))
    frechet = frechet_mouth_distance(generated, truth_features) if generated else None
    return {"clips": rows, "summary": _summary(rows), "frechet_mouth": frechet}


def generate_heldout(bundle_folder: str | Path, data: str | Path, out: str | Path, steps: int, seed: int,
                     device: str = "cpu", progress: bool = True) -> Path:
    """Generate every held-out clip of `data` with the bundle: portrait = the clip's first frame, audio = its
    soundtrack, same size. Writes `out/videos/<id>.mp4` (and the portraits); returns the videos folder."""
    from ..pipeline import bundle_paths, generate_to_file, load_bundle
    from ..streaming import StreamSettings

    paths = bundle_paths(bundle_folder)
    bundle = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"], device=device)
    heldout = [e for e in scan_clip_folder(data) if e.split != "train"]
    if not heldout:
        raise ValueError(f"{data} has no held-out clips to generate")
    videos, portraits = Path(out) / "videos", Path(out) / "portraits"
    videos.mkdir(parents=True, exist_ok=True)
    portraits.mkdir(parents=True, exist_ok=True)
    for entry in tqdm(heldout, desc="generating", unit="clip", disable=not progress):
        first = load_truth(entry).frames[0]
        portrait = portraits / f"{entry.id}.png"
        Image.fromarray(first).save(portrait)
        height, width = first.shape[:2]
        generate_to_file(bundle, portrait, entry.video, videos / f"{entry.id}.mp4", height, width,
                         StreamSettings(steps=steps, seed=seed, fps=EVAL_FPS))
    return videos

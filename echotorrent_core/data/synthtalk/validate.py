"""Does a real face-landmark model see SynthTalk's faces and their mouths? mediapipe's face mesh (through
`echotorrent_core.metrics.face_mesh.track_face`, the same instrument that judges generated video) is run over the
written mp4s; per clip: the fraction of frames with a face, and the Pearson correlation between its inner-lip gap
(landmarks 13/14 over the inter-ocular distance) and the ground-truth `mouth_open`, on the frames it found.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from tqdm import tqdm

from ...media import read_video_frames


@dataclass(frozen=True)
class LandmarkAgreement:
    clip_id: str
    domain: str
    voice: str
    split: str
    frames: int
    detection_rate: float
    correlation: float  # NaN when fewer than 3 frames were found or either track is constant


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two `[N]` arrays (NaN when undefined)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape[0] < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def measure_frames(frames: np.ndarray, mouth_open: np.ndarray) -> tuple[float, float]:
    """(detection rate, Pearson(lip gap, mouth_open) over the detected frames) for uint8 `[T, H, W, 3]` frames."""
    from ...metrics.face_mesh import NoFaceFoundError, track_face

    try:
        track = track_face(frames)
    except NoFaceFoundError:
        return 0.0, float("nan")
    found = track.found.numpy()
    gap = track.lip_gap().numpy()
    return float(found.mean()), pearson(gap[found], np.asarray(mouth_open)[found])


def validate_folder(folder: str | Path, split: str | None = "heldout", progress: bool = True) -> list[LandmarkAgreement]:
    """Measure every clip (of `split`, or all when None) of a SynthTalk clip folder."""
    folder = Path(folder)
    entries = json.loads((folder / "index.json").read_text())["clips"]
    chosen = [e for e in entries if split is None or e["split"] == split]
    results = []
    for entry in tqdm(chosen, desc="face mesh on clips", unit="clip", disable=not progress):
        frames, _, _, _ = read_video_frames(folder / entry["video"])
        mouth_open = load_file(str(folder / entry["params"]))["mouth_open"].numpy()
        count = min(frames.shape[0], mouth_open.shape[0])
        rate, correlation = measure_frames(frames[:count].numpy(), mouth_open[:count])
        results.append(LandmarkAgreement(entry["id"], entry["domain"], entry["voice"], entry["split"], count, rate,
                                         correlation))
    return results


def agreement_table(results: list[LandmarkAgreement]) -> str:
    """Markdown table per (domain, voice) and per domain: clips, frames, detection rate (frame-weighted), mean
    and minimum per-clip correlation."""
    groups: dict[tuple[str, str], list[LandmarkAgreement]] = defaultdict(list)
    for result in results:
        groups[(result.domain, result.voice)].append(result)
        groups[(result.domain, "all")].append(result)
        groups[("all", "all")].append(result)
    lines = ["| domain | voice | clips | frames | detection | lip-gap r (mean) | r (min) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (domain, voice), members in sorted(groups.items()):
        frames = sum(m.frames for m in members)
        detection = sum(m.detection_rate * m.frames for m in members) / max(frames, 1)
        rs = np.array([m.correlation for m in members if np.isfinite(m.correlation)])
        mean = f"{rs.mean():.3f}" if rs.size else "n/a"
        low = f"{rs.min():.3f}" if rs.size else "n/a"
        lines.append(f"| {domain} | {voice} | {len(members)} | {frames} | {detection:.3f} | {mean} | {low} |")
    return "\n".join(lines)


def results_json(results: list[LandmarkAgreement]) -> str:
    return json.dumps([asdict(r) for r in results], indent=1)

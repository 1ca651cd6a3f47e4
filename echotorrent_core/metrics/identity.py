"""Identity: dlib's face-recognition network (ResNet, 128-d descriptors from `face_recognition_models`) on sampled
frames against the reference portrait, and the drift of that similarity over time.

The face box comes from the face mesh (`face_mesh.py`; dlib's HOG detector misses small and drawn faces), dlib's
5-point shape predictor aligns the 150x150 chip, and the network embeds it. Scores keep dlib's scale: `distance`
is the Euclidean distance of descriptors (real photos: same person 0.18-0.27, different 0.62-0.84, DATA.md) and
`similarity` the cosine of the two descriptors. The network costs about 0.1 s per face on one CPU core (dlib has
no GPU path in this wheel), so videos are sampled at `SAMPLES_PER_SECOND`. Drift is the least-squares slope of the
similarity against time in minutes (negative: the face wanders away from the reference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .face_mesh import FaceTrack

SAMPLES_PER_SECOND = 2.0
BOX_MARGIN = 0.1  # fraction of the landmark box added on each side
_MODELS: dict = {}


def _dlib_models():
    if not _MODELS:
        import dlib
        import face_recognition_models as models

        _MODELS["shape"] = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        _MODELS["net"] = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    return _MODELS["shape"], _MODELS["net"]


def face_box(points: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around face-mesh points `[468, 2]` with a margin, clipped to the frame."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    margin = (high - low) * BOX_MARGIN
    left, top = (low - margin).floor().int().tolist()
    right, bottom = (high + margin).ceil().int().tolist()
    return max(0, left), max(0, top), min(width - 1, right), min(height - 1, bottom)


def face_descriptors(frames: np.ndarray | torch.Tensor, track: FaceTrack, indices: list[int]) -> torch.Tensor:
    """dlib descriptors `[len(indices), 128]` of RGB frames `[T, H, W, 3]` uint8 at `indices`."""
    import dlib

    shape_predictor, net = _dlib_models()
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    out = []
    for t in indices:
        image = np.ascontiguousarray(frames[t])
        box = dlib.rectangle(*face_box(track.points[t], height, width))
        out.append(np.asarray(net.compute_face_descriptor(image, shape_predictor(image, box))))
    return torch.from_numpy(np.stack(out)).float()


def sample_indices(frames: int, fps: float, per_second: float = SAMPLES_PER_SECOND) -> list[int]:
    """Evenly spaced frame indices, `per_second` of them per second (at least 2, the last frame included)."""
    count = max(2, int(round(frames / fps * per_second)))
    return sorted(set(np.linspace(0, frames - 1, count).round().astype(int).tolist()))


@dataclass(frozen=True)
class IdentityScores:
    """Mean / min cosine similarity and mean dlib distance to the reference, and the similarity's drift per
    minute (least-squares slope)."""

    similarity: float
    min_similarity: float
    distance: float
    drift_per_minute: float

    def as_dict(self) -> dict:
        return asdict(self)


def identity_scores(descriptors: torch.Tensor, reference: torch.Tensor, times: torch.Tensor) -> IdentityScores:
    """Scores of frame descriptors `[N, D]` at `times` `[N]` (seconds) against a reference descriptor `[D]`."""
    if descriptors.ndim != 2 or reference.shape != descriptors.shape[1:] or times.shape != descriptors.shape[:1]:
        raise ValueError(f"expected descriptors [N, D], reference [D] and times [N], got {tuple(descriptors.shape)}, "
                         f"{tuple(reference.shape)}, {tuple(times.shape)}")
    cosine = torch.nn.functional.cosine_similarity(descriptors.double(), reference.double()[None], dim=1)
    distance = (descriptors.double() - reference.double()[None]).norm(dim=1)
    minutes = times.double() / 60.0
    centred = minutes - minutes.mean()
    denominator = float((centred ** 2).sum())
    slope = float((centred * (cosine - cosine.mean())).sum() / denominator) if denominator > 0 else 0.0
    return IdentityScores(float(cosine.mean()), float(cosine.min()), float(distance.mean()), slope)

"""The landmark instrument: mediapipe's face mesh (468 points, bundled tflite models, runs offline) over a video.

Frames are upscaled to at least `MIN_SIDE` pixels before tracking (the detector misses faces in 64 px frames);
landmarks come back in the original frame's pixels. Frames where the mesh finds no face are filled by linear
interpolation between the nearest found frames (held at the ends), and `found` says which were measured.
CPU only (mediapipe's tflite runtime): about 3 ms per frame at 256 px; GPUs do not change this.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

MIN_SIDE = 256
DETECTION_CONFIDENCE = 0.3  # drawn faces are found at 0.3 (DATA.md); real faces pass far above it
# Face-mesh indices: inner lips (upper 13, lower 14), lip corners, outer lips, eye outer corners.
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
LIP_CORNERS = (61, 291)
OUTER_LIPS = (0, 17, 61, 291)
EYE_OUTER_CORNERS = (33, 263)


class NoFaceFoundError(ValueError):
    """The face mesh found no face in any frame of a video."""


@dataclass(frozen=True)
class FaceTrack:
    """Face-mesh landmarks of a video: `points` `[T, 468, 2]` (x, y) in frame pixels, `found` `[T]` bool."""

    points: torch.Tensor
    found: torch.Tensor

    @property
    def found_fraction(self) -> float:
        return float(self.found.float().mean())

    def interocular(self) -> torch.Tensor:
        """Distance between the eye outer corners per frame `[T]` (pixels): the face-size unit."""
        left, right = EYE_OUTER_CORNERS
        return (self.points[:, left] - self.points[:, right]).norm(dim=-1)

    def lip_gap(self) -> torch.Tensor:
        """Inner-lip gap (points 13/14) over the inter-ocular distance per frame `[T]`: the mouth opening."""
        gap = (self.points[:, UPPER_INNER_LIP] - self.points[:, LOWER_INNER_LIP]).norm(dim=-1)
        return gap / self.interocular().clamp_min(1e-6)


def _fill_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over time of the frames without a face, per coordinate."""
    index = np.arange(len(found))
    known = index[found]
    flat = points.reshape(len(found), -1)
    filled = np.stack([np.interp(index, known, flat[known, c]) for c in range(flat.shape[1])], axis=1)
    return filled.reshape(points.shape)


def track_face(frames: torch.Tensor | np.ndarray, progress: bool = False) -> FaceTrack:
    """Run the face mesh over RGB frames `[T, H, W, 3]` uint8 (video mode: each frame seeds the next).

    Raises `NoFaceFoundError` when no frame holds a face the mesh can find.
    """
    import mediapipe as mp

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected RGB frames [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    count, height, width = frames.shape[:3]
    scale = max(1.0, MIN_SIDE / min(height, width))
    points = np.zeros((count, 468, 2), dtype=np.float64)
    found = np.zeros(count, dtype=bool)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                         min_detection_confidence=DETECTION_CONFIDENCE,
                                         min_tracking_confidence=DETECTION_CONFIDENCE) as mesh:
        for t in tqdm(range(count), desc="face mesh", unit="frame", disable=not progress, leave=False):
            image = frames[t]
            if scale > 1.0:
                image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
            result = mesh.process(np.ascontiguousarray(image))
            if result.multi_face_landmarks:
                marks = result.multi_face_landmarks[0].landmark[:468]
                points[t] = [(m.x * width, m.y * height) for m in marks]
                found[t] = True
    if not found.any():
        raise NoFaceFoundError(f"mediapipe's face mesh found no face in any of the {count} frames "
                               f"({width}x{height}); expected a video of one visible, roughly frontal face")
    if not found.all():
        points = _fill_missing(points, found)
    return FaceTrack(torch.from_numpy(points).float(), torch.from_numpy(found))

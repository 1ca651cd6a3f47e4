"""Mouth crops for the sync expert, placed by the face-mesh landmarks.

Per frame the crop is centred on the mean of the outer-lip landmarks and rotated so the eye line is level; its
size is a fixed multiple of the video's median inter-ocular distance (one scale for the whole video, so a
talking mouth does not rescale its own crop). Centre and angle are smoothed over `SMOOTH_FRAMES` frames, which
removes landmark jitter without lagging head motion by more than a frame. Crops are grayscale in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .face_mesh import EYE_OUTER_CORNERS, OUTER_LIPS, FaceTrack

CROP_HEIGHT, CROP_WIDTH = 32, 48
CROP_SPAN = 1.3  # crop width in inter-ocular distances: both lip corners plus a margin
SMOOTH_FRAMES = 3


def _smooth(series: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average along time `[T, ...]` with edge values repeated."""
    if frames <= 1 or len(series) < 2:
        return series
    pad = frames // 2
    padded = np.concatenate([np.repeat(series[:1], pad, 0), series, np.repeat(series[-1:], pad, 0)])
    kernel = np.ones(frames) / frames
    flat = padded.reshape(len(padded), -1)
    out = np.stack([np.convolve(flat[:, c], kernel, mode="valid") for c in range(flat.shape[1])], axis=1)
    return out.reshape(series.shape)


def mouth_crop_transforms(track: FaceTrack) -> np.ndarray:
    """Affine maps (frame pixels -> crop pixels) per frame `[T, 2, 3]`."""
    points = track.points.double().numpy()
    centre = _smooth(points[:, list(OUTER_LIPS)].mean(axis=1), SMOOTH_FRAMES)
    eyes = points[:, EYE_OUTER_CORNERS[1]] - points[:, EYE_OUTER_CORNERS[0]]
    angle = _smooth(np.arctan2(eyes[:, 1], eyes[:, 0]), SMOOTH_FRAMES)
    scale = CROP_WIDTH / (CROP_SPAN * float(np.median(np.linalg.norm(eyes, axis=1))))
    transforms = np.empty((len(points), 2, 3))
    for t, ((cx, cy), theta) in enumerate(zip(centre, angle)):
        cos, sin = np.cos(-theta) * scale, np.sin(-theta) * scale
        rotation = np.array([[cos, -sin], [sin, cos]])
        transforms[t, :, :2] = rotation
        transforms[t, :, 2] = np.array([CROP_WIDTH / 2, CROP_HEIGHT / 2]) - rotation @ np.array([cx, cy])
    return transforms


def mouth_crops(frames: torch.Tensor | np.ndarray, track: FaceTrack) -> torch.Tensor:
    """RGB frames `[T, H, W, 3]` uint8 + their face track -> grayscale mouth crops `[T, CROP_HEIGHT, CROP_WIDTH]`
    float32 in [0, 1] (bilinear, borders replicated)."""
    frames = np.asarray(frames)
    if len(frames) != len(track.points):
        raise ValueError(f"{len(frames)} frames but a face track of {len(track.points)}")
    crops = np.empty((len(frames), CROP_HEIGHT, CROP_WIDTH), dtype=np.float32)
    for t, matrix in enumerate(mouth_crop_transforms(track)):
        gray = cv2.cvtColor(np.ascontiguousarray(frames[t]), cv2.COLOR_RGB2GRAY)
        crops[t] = cv2.warpAffine(gray, matrix, (CROP_WIDTH, CROP_HEIGHT), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE) / 255.0
    return torch.from_numpy(crops)

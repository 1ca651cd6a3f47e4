"""Deliberately broken versions of a good video: the controls every metric must tell apart from the original.

Frames are RGB `[T, H, W, 3]` uint8 numpy, audio `[C, S]` float. Shifted and shuffled audio break sync only;
a frozen mouth keeps the face but stops the lips and jaw; blur removes detail; colour drift tints the video more and more
over time; an identity swap is another identity's video (made by the caller, not here).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .face_mesh import EYE_OUTER_CORNERS, LIP_CORNERS, OUTER_LIPS, FaceTrack

SUBNASALE, CHIN, NOSE_TIP, UPPER_LIP = 2, 152, 1, 0  # face-mesh indices
RIGID_POINTS = (*EYE_OUTER_CORNERS, NOSE_TIP)
FEATHER_PIXELS = 3


def shift_audio(audio: torch.Tensor, rate: int, frames: int, fps: float) -> torch.Tensor:
    """Delay `[C, S]` audio by `frames` video frames (negative: advance); silence fills, the length is kept."""
    samples = int(round(abs(frames) * rate / fps))
    silence = torch.zeros(audio.shape[0], min(samples, audio.shape[1]), dtype=audio.dtype)
    if frames >= 0:
        return torch.cat([silence, audio[:, : audio.shape[1] - silence.shape[1]]], dim=1)
    return torch.cat([audio[:, silence.shape[1]:], silence], dim=1)


def freeze_mouth(frames: np.ndarray, track: FaceTrack, source_frame: int = 0) -> np.ndarray:
    """Paste the lower face (lips and jaw, from below the nose to below the chin at its lowest) of `source_frame`
    over every frame, moved with the rigid upper face (eye corners and nose tip, which do not move when the mouth
    opens), with a feathered edge. The jaw is included because a face mesh reads the opening from the chin as
    well as from the lips."""
    points = track.points.numpy()
    centres = points[:, list(RIGID_POINTS)].mean(axis=1)
    relative = points - centres[:, None]
    iod = float(np.median(track.interocular().numpy()))
    lips = relative[:, list(OUTER_LIPS)].mean(axis=1)
    half_width = max(float(np.abs(relative[:, list(LIP_CORNERS), 0] - lips[:, None, 0]).max()) * 1.5, 0.3 * iod)
    centre_x = float(np.median(lips[:, 0]))
    top = 0.5 * (float(relative[:, SUBNASALE, 1].max()) + float(relative[:, UPPER_LIP, 1].min()))  # below the nose
    bottom = float(relative[:, CHIN, 1].max()) + 0.15 * iod
    height, width = frames.shape[1:3]
    source = frames[source_frame].astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = frames.astype(np.float32).copy()
    for t in range(len(frames)):
        dx, dy = centres[t] - centres[source_frame]
        moved = cv2.warpAffine(source, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height),
                               borderMode=cv2.BORDER_REPLICATE)
        x, y = xx - centres[t, 0] - centre_x, yy - centres[t, 1]
        inside = np.minimum(half_width - np.abs(x), np.minimum(y - top, bottom - y))
        alpha = np.clip(inside / FEATHER_PIXELS, 0.0, 1.0)[..., None]
        out[t] = alpha * moved + (1 - alpha) * out[t]
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def blur(frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur of every frame (sigma in pixels)."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def colour_drift(frames: np.ndarray, strength: float = 0.3) -> np.ndarray:
    """Tint growing linearly over time: red gain up to 1 + strength, blue down to 1 - strength at the last frame."""
    ramp = np.linspace(0.0, strength, len(frames), dtype=np.float32)[:, None, None, None]
    gains = np.concatenate([1 + ramp, np.ones_like(ramp), 1 - ramp], axis=-1)
    return np.clip(frames.astype(np.float32) * gains, 0, 255).round().astype(np.uint8)

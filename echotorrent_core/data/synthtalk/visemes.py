"""Phones -> per-frame mouth tracks with coarticulation (a dominance-blending model after Cohen & Massaro).

Each phone i pulls the mouth towards its target x_i (`phones.VISEME_TARGETS`) with a dominance
D_i(t) = a_i * exp(-(|t - c_i| / (d_i / 2 + SPREAD_SECONDS)) ** 1.5) (a_i from `phones.DOMINANCE`, c_i its centre,
d_i its duration); the mouth at time t is sum_i D_i x_i / sum_i D_i, averaged over `SUBSAMPLES` instants inside each
video frame. The blend is smooth (no jumps), neighbours shape each other, and long phones reach their target.
"""

from __future__ import annotations

import numpy as np

from .phones import DOMINANCE, PHONE_ID, VISEME_TARGETS
from .speech import PhoneSegment

SPREAD_SECONDS = 0.045
SUBSAMPLES = 4
TRACKS = ("mouth_open", "mouth_width", "mouth_round", "teeth")


def viseme_tracks(phones: list[PhoneSegment], frames: int, fps: float,
                  articulation: float = 1.0) -> dict[str, np.ndarray]:
    """float32 `[frames]` tracks `mouth_open`, `mouth_width`, `mouth_round`, `teeth` in [0, 1].

    `articulation` scales the opening (and, halfway, width and rounding) around the rest shape: > 1 exaggerated,
    < 1 mumbled. Frame k covers [k / fps, (k + 1) / fps).
    """
    if not phones:
        raise ValueError("expected at least one phone segment")
    times = (np.arange(frames)[:, None] + (np.arange(SUBSAMPLES)[None, :] + 0.5) / SUBSAMPLES) / fps
    times = times.reshape(-1)
    targets = np.array([VISEME_TARGETS[p.phone] for p in phones], dtype=np.float64)  # [N, 4]
    strength = np.array([DOMINANCE[p.phone] for p in phones])
    centres = np.array([(p.start + p.end) / 2 for p in phones])
    spreads = np.array([(p.end - p.start) / 2 + SPREAD_SECONDS for p in phones])
    blended = np.empty((times.shape[0], 4))
    for start in range(0, times.shape[0], 4096):  # bounded memory for long clips
        t = times[start:start + 4096, None]
        dominance = strength * np.exp(-(np.abs(t - centres) / spreads) ** 1.5) + 1e-12
        blended[start:start + 4096] = dominance @ targets / dominance.sum(axis=1, keepdims=True)
    blended = blended.reshape(frames, SUBSAMPLES, 4).mean(axis=1)
    rest = np.array(VISEME_TARGETS["SIL"])
    scale = np.array([articulation, 1 + (articulation - 1) / 2, 1 + (articulation - 1) / 2, 1.0])
    blended = np.clip(rest + (blended - rest) * scale, 0.0, 1.0).astype(np.float32)
    return {name: blended[:, index] for index, name in enumerate(TRACKS)}


def phone_per_frame(phones: list[PhoneSegment], frames: int, fps: float) -> np.ndarray:
    """int64 `[frames]`: id (`phones.PHONE_ID`) of the phone sounding at each frame's centre."""
    centres = (np.arange(frames) + 0.5) / fps
    starts = np.array([p.start for p in phones])
    index = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(phones) - 1)
    ids = np.array([PHONE_ID[p.phone] for p in phones], dtype=np.int64)
    return ids[index]

"""Head pose, blinks, expressions and lighting over time: smooth random curves, deterministic from a Generator.

All tracks are float32 per frame: `pose [T, 3]` (yaw, pitch, roll in radians), `shift [T, 2]` (head offset as a
fraction of the image side), `blink [T]` (0 open .. 1 closed), `smile [T]`, `brow [T]` (raise) in [0, 1],
`light [T, 3]` (overall gain, left-right gradient, top-bottom gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLINK_SECONDS = 0.22


@dataclass(frozen=True)
class MotionStyle:
    """How much a domain moves: amplitudes in radians / fractions, rates in Hz or events per second."""

    sway: float  # yaw / roll amplitude
    nod: float  # pitch amplitude
    shift: float
    speed: float  # frequency multiplier of the slow curves
    nod_rate: float
    blink_rate: float
    expression: float  # smile / brow amplitude
    light: float


def smooth_curve(rng: np.random.Generator, frames: int, fps: float, amplitude: float, speed: float) -> np.ndarray:
    """Sum of 3 sinusoids (0.05-0.5 Hz times `speed`, random phases) scaled to about +-`amplitude`; `[frames]`."""
    t = np.arange(frames) / fps
    freqs = rng.uniform(0.05, 0.5, 3) * speed
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.dirichlet(np.ones(3))
    return (amplitude * (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0))


def bumps(rng: np.random.Generator, frames: int, fps: float, rate: float, width_s: float) -> np.ndarray:
    """Smooth raised-cosine events (peak 1, length `width_s`) at Poisson times of `rate` per second; `[frames]`."""
    t = np.arange(frames) / fps
    track = np.zeros(frames)
    cursor = rng.exponential(1.0 / rate) * 0.5 if rate > 0 else np.inf
    while cursor < t[-1] + width_s:
        inside = np.abs(t - cursor) < width_s / 2
        track[inside] = np.maximum(track[inside], 0.5 + 0.5 * np.cos(2 * np.pi * (t[inside] - cursor) / width_s))
        cursor += max(rng.exponential(1.0 / rate), width_s * 1.5)
    return track


def motion_tracks(rng: np.random.Generator, frames: int, fps: float, style: MotionStyle,
                  speech_energy: np.ndarray) -> dict[str, np.ndarray]:
    """All non-mouth tracks of a clip; `speech_energy [frames]` in [0, 1] makes nods and brows follow speech."""
    yaw = smooth_curve(rng, frames, fps, style.sway, style.speed)
    roll = smooth_curve(rng, frames, fps, style.sway * 0.4, style.speed)
    nods = bumps(rng, frames, fps, style.nod_rate, 0.6) * rng.uniform(0.5, 1.0)
    pitch = smooth_curve(rng, frames, fps, style.nod * 0.5, style.speed) + style.nod * nods * (0.4 + speech_energy)
    shift = np.stack([smooth_curve(rng, frames, fps, style.shift, style.speed),
                      smooth_curve(rng, frames, fps, style.shift * 0.6, style.speed) + 0.3 * style.shift * nods], 1)
    blink = bumps(rng, frames, fps, style.blink_rate, BLINK_SECONDS)
    smile = np.clip(0.5 * style.expression + smooth_curve(rng, frames, fps, style.expression, style.speed), 0, 1)
    brow = np.clip(style.expression * (0.6 * bumps(rng, frames, fps, 0.3, 1.0) + 0.4 * speech_energy), 0, 1)
    light = np.stack([1.0 + smooth_curve(rng, frames, fps, style.light, 0.5),
                      smooth_curve(rng, frames, fps, style.light * 1.5, 0.5),
                      smooth_curve(rng, frames, fps, style.light * 0.8, 0.5)], 1)
    return {
        "pose": np.stack([yaw, pitch, roll], 1).astype(np.float32), "shift": shift.astype(np.float32),
        "blink": blink.astype(np.float32), "smile": smile.astype(np.float32), "brow": brow.astype(np.float32),
        "light": light.astype(np.float32),
    }

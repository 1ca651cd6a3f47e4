"""Ground-truth clips against their deliberately broken versions: the check that every metric separates good
from broken, and the closing table of the sync expert (Sync-C, offset accuracy) and the identity metric.

Controls per clip: `ground_truth`; `shifted_5` (audio delayed 5 frames: sync stays, the offset must read +5);
`shifted_40` (delayed 1.6 s, beyond the +-15 search: sync is lost); `shuffled_audio` (another clip's speech);
`frozen_mouth` (frame 0's mouth pasted on every frame); `blur` (Gaussian, sigma 2 px); `colour_drift` (tint
growing to 30 %); `identity_swap` (another identity's clip against this clip's reference portrait).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .corruptions import blur, colour_drift, freeze_mouth, shift_audio
from .evaluate import evaluate_measured, reference_descriptor
from .measurements import EVAL_FPS, VideoMeasurements, measure_video, with_audio
from .sync_expert import SyncExpert

CONTROLS = ("ground_truth", "shifted_5", "shifted_40", "shuffled_audio", "frozen_mouth", "blur", "colour_drift",
            "identity_swap")
EXPECTED_OFFSET = {"ground_truth": 0, "shifted_5": 5}
SMALL_SHIFT, LARGE_SHIFT = 5, 40


@dataclass(frozen=True)
class TruthClip:
    """A ground-truth clip: frames `[T, H, W, 3]` uint8 at 25 fps, audio `[C, S]` at `rate`, its identity."""

    id: str
    frames: np.ndarray
    audio: torch.Tensor
    rate: int
    identity: str | None


def _fit_audio(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """`[C, S]` tiled or cut to `samples`."""
    repeats = -(-samples // audio.shape[1])
    return audio.repeat(1, repeats)[:, :samples]


def _partner(clips: list[TruthClip], index: int, other_identity: bool) -> TruthClip:
    """The next clip after `index` (cyclically), with a different identity when asked and one exists."""
    order = [clips[(index + step) % len(clips)] for step in range(1, len(clips))]
    if other_identity:
        different = [c for c in order if c.identity is None or c.identity != clips[index].identity]
        order = different or order
    if not order:
        raise ValueError("the controls need at least two ground-truth clips (shuffled audio, identity swap)")
    return order[0]


def _measured_controls(clips: list[TruthClip], index: int, measured: VideoMeasurements
                       ) -> dict[str, tuple[VideoMeasurements, np.ndarray | None]]:
    clip = clips[index]
    shuffled = _partner(clips, index, other_identity=False)
    swapped = _partner(clips, index, other_identity=True)
    measure = lambda frames: measure_video(frames, EVAL_FPS, clip.audio, clip.rate)  # noqa: E731
    return {
        "ground_truth": (measured, None),
        "shifted_5": (with_audio(measured, shift_audio(clip.audio, clip.rate, SMALL_SHIFT, EVAL_FPS), clip.rate), None),
        "shifted_40": (with_audio(measured, shift_audio(clip.audio, clip.rate, LARGE_SHIFT, EVAL_FPS), clip.rate), None),
        "shuffled_audio": (with_audio(measured, _fit_audio(shuffled.audio, clip.audio.shape[1]), clip.rate), None),
        "frozen_mouth": (measure(freeze_mouth(clip.frames, measured.track)), clip.frames),
        "blur": (measure(blur(clip.frames, 2.0)), clip.frames),
        "colour_drift": (measure(colour_drift(clip.frames, 0.3)), clip.frames),
        "identity_swap": (measure_video(swapped.frames, EVAL_FPS, swapped.audio, swapped.rate), None),
    }


def control_rows(clips: list[TruthClip], expert: SyncExpert, progress: bool = True) -> list[dict]:
    """One row per (clip, control): {"clip", "control", metric: value, ...}."""
    rows = []
    for index, clip in enumerate(tqdm(clips, desc="controls", unit="clip", disable=not progress)):
        measured = measure_video(clip.frames, EVAL_FPS, clip.audio, clip.rate)
        reference = clip.frames[0]
        embedding = reference_descriptor(reference)
        for control, (video, truth) in _measured_controls(clips, index, measured).items():
            metrics = evaluate_measured(video, expert, reference, truth, reference_embedding=embedding)
            rows.append({"clip": clip.id, "control": control, **metrics})
    return rows


def summarise_controls(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per control: the mean of every metric and, where an offset is expected, the fraction within +-1 frame."""
    summary = {}
    for control in CONTROLS:
        chosen = [r for r in rows if r["control"] == control]
        if not chosen:
            continue
        keys = [k for k, v in chosen[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        means = {k: float(np.mean([r[k] for r in chosen])) for k in keys}
        if control in EXPECTED_OFFSET:
            expected = EXPECTED_OFFSET[control]
            means["sync_offset_accuracy"] = float(np.mean([abs(r["sync_offset"] - expected) <= 1 for r in chosen]))
            means["landmark_offset_accuracy"] = float(np.mean([abs(r["landmark_offset"] - expected) <= 1
                                                               for r in chosen]))
        means["clips"] = len(chosen)
        summary[control] = means
    return summary

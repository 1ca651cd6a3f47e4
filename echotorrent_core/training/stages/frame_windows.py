"""Pixel windows for the VAE stage: face-centred `1 + 4k`-frame windows of a clip folder (data/clips.py), cached."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ...data.clips import ClipSettings, ClipWindows


def prepare_frame_windows(folder: str, split: str, size: int, frames: int, stride: int, fps: float,
                          detector: str = "auto") -> dict[str, torch.Tensor]:
    """`{"video": [N, frames, 3, size, size] uint8}`: every window of the clips of `split` (bad clips skipped)."""
    settings = ClipSettings(fps=fps, size=size, window_frames=frames, window_stride=stride, detector=detector)
    windows = [torch.from_numpy(np.ascontiguousarray(w.frames)).permute(0, 3, 1, 2)
               for w in tqdm(ClipWindows(folder, settings, split), desc=f"frame windows ({split})", unit="window")]
    if not windows:
        raise ValueError(f"no usable clip of split {split!r} in {folder} has {frames} frames")
    return {"video": torch.stack(windows)}

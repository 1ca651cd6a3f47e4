"""Decoded video in the core's pixel convention -> frames as ComfyUI and the mp4 writer take them."""

from __future__ import annotations

import torch


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """`[3, T, H, W]` in [-1, 1] (any dtype or device) -> `[T, H, W, 3]` float32 in [0, 1] on the CPU (clamped)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected decoded video [3, T, H, W], got {tuple(video.shape)}")
    return ((video.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()

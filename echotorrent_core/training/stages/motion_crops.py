"""Training crops that find the mouth: a crop centred on a pixel drawn in proportion to its motion over the window.

At 128 px the mouth fills a few hundred of a frame's 16384 pixels, so uniform 48 px crops of a face window hold the
whole mouth in about one crop of nine; the VAE then learns the still face well and the speaking mouth poorly.
Centring a share of the crops on moving pixels (`losses/motion_weights.relative_motion`: mouth, eyes, head edges)
shows it the mouth in most of them at no extra cost.
"""

from __future__ import annotations

import torch

from ..losses.motion_weights import relative_motion


def _uniform_corner(side: int, crop: int) -> int:
    return int(torch.randint(0, side - crop + 1, (1,)).item())


def motion_centred_crops(video: torch.Tensor, crop: int, fraction: float) -> torch.Tensor:
    """`[B, T, 3, crop, crop]` from a batch `video` `[B, T, 3, S, S]` (uint8 or float), one crop per sample (global
    torch RNG): with probability `fraction` centred on a pixel drawn with probability proportional to that sample's
    relative motion over frames 1.. (clamped inside the frame), else at a uniform position; a still window falls
    back to the uniform position."""
    if video.ndim != 5 or video.shape[2] != 3 or video.shape[-1] != video.shape[-2]:
        raise ValueError(f"video must be [B, T, 3, S, S], got {tuple(video.shape)}")
    side = video.shape[-1]
    if not 0 < crop <= side:
        raise ValueError(f"crop must be in (0, {side}], got {crop}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    crops = []
    for sample in video:
        top, left = _uniform_corner(side, crop), _uniform_corner(side, crop)
        if torch.rand(()).item() < fraction and sample.shape[0] > 1:
            motion = relative_motion(sample.permute(1, 0, 2, 3)[None].float())[0].flatten()
            if motion.sum() > 0:
                pixel = int(torch.multinomial(motion, 1).item())
                top = min(max(pixel // side - crop // 2, 0), side - crop)
                left = min(max(pixel % side - crop // 2, 0), side - crop)
        crops.append(sample[..., top : top + crop, left : left + crop])
    return torch.stack(crops)

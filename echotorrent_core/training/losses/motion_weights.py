"""Per-cell loss weights that follow motion: the latent cells a window changes most (mouth, eyes, moving head
edges) weigh more than the still background and face.

At 128 px a latent cell covers 8 x 8 pixels and the mouth only 2 x 1 of a 16 x 16 grid, so an unweighted latent MSE
hardly rewards the few cells that carry the speech. The weights come from the target window itself: the motion of
cell (h, w) is the mean over channels and generated frames of `|x0 - mean over the generated frames of x0|`.
"""

from __future__ import annotations

import torch

STILL_TOLERANCE = 1e-5  # mean motion below this fraction of the latents' RMS counts as a still window


def relative_motion(x: torch.Tensor, first: int = 1) -> torch.Tensor:
    """`[B, h, w]`: each cell's motion over frames `first..` of x `[B, C, F, h, w]` (mean over channels and frames
    of `|x - the frames' mean|`) over the sample's mean motion, so its mean is 1; all zeros for a still window
    (mean motion under `STILL_TOLERANCE` of the RMS)."""
    if x.ndim != 5 or x.shape[2] <= first:
        raise ValueError(f"x must be [B, C, F > {first}, h, w], got {tuple(x.shape)}")
    moving = x[:, :, first:].detach().float()
    motion = (moving - moving.mean(dim=2, keepdim=True)).abs().mean(dim=(1, 2))
    scale = motion.mean(dim=(1, 2), keepdim=True)
    size = moving.pow(2).mean(dim=(1, 2, 3, 4)).sqrt()[:, None, None]
    moves = scale > STILL_TOLERANCE * size  # below: rounding error of the temporal mean, not motion
    return torch.where(moves, motion / scale.clamp_min(1e-30), torch.zeros_like(motion))


def motion_cell_weights(x0: torch.Tensor, strength: float, first_generated: int = 1) -> torch.Tensor:
    """Weights `[B, 1, 1, h, w]` with mean 1 over the cells of each sample: `1 + strength * relative_motion`,
    rescaled to mean 1, over latent frames `first_generated..` of x0 `[B, C, F, h, w]`. A still window (or
    `strength = 0`) gets uniform weights."""
    if strength < 0:
        raise ValueError(f"motion weighting strength must be >= 0, got {strength}")
    weights = 1.0 + strength * relative_motion(x0, first_generated)
    return (weights / weights.mean(dim=(1, 2), keepdim=True))[:, None, None]

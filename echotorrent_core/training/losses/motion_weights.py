"""Per-cell loss weights that follow motion: the latent cells a window changes most (mouth, eyes, moving head
edges) weigh more than the still background and face.

At 128 px a latent cell covers 8 x 8 pixels and the mouth only 2 x 1 of a 16 x 16 grid, so an unweighted latent MSE
hardly rewards the few cells that carry the speech. The weights come from the target window itself: the motion of
cell (h, w) is the mean over channels and generated frames of `|x0 - mean over the generated frames of x0|`.
"""

from __future__ import annotations

import torch

STILL_TOLERANCE = 1e-5  # mean motion below this fraction of the latents' RMS counts as a still window


def motion_cell_weights(x0: torch.Tensor, strength: float, first_generated: int = 1) -> torch.Tensor:
    """Weights `[B, 1, 1, h, w]` with mean 1 over the cells of each sample: `1 + strength * m / mean(m)`, rescaled
    to mean 1, where `m` `[B, h, w]` is the motion of each cell over latent frames `first_generated..` of x0
    `[B, C, F, h, w]`. A still window (mean motion under `STILL_TOLERANCE` of the RMS; or `strength = 0`) gets uniform weights."""
    if strength < 0:
        raise ValueError(f"motion weighting strength must be >= 0, got {strength}")
    if x0.ndim != 5 or x0.shape[2] <= first_generated:
        raise ValueError(f"x0 must be [B, C, F > {first_generated}, h, w], got {tuple(x0.shape)}")
    generated = x0[:, :, first_generated:].detach().float()
    motion = (generated - generated.mean(dim=2, keepdim=True)).abs().mean(dim=(1, 2))
    scale = motion.mean(dim=(1, 2), keepdim=True)
    size = generated.pow(2).mean(dim=(1, 2, 3, 4)).sqrt()[:, None, None]
    moves = scale > STILL_TOLERANCE * size  # below: rounding error of the temporal mean, not motion
    relative = torch.where(moves, motion / scale.clamp_min(1e-30), torch.zeros_like(motion))
    weights = 1.0 + strength * relative
    return (weights / weights.mean(dim=(1, 2), keepdim=True))[:, None, None]

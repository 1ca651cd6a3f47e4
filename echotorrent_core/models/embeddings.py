"""Input and output layers of the Wan DiT: timestep sinusoid, CLIP image projection, output head."""

from __future__ import annotations

import torch
from torch import nn


def timestep_sinusoid(t: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """Wan's sinusoidal timestep embedding, cosines then sines: `t` `[...]` -> `[..., freq_dim]` float32.

    Frequencies are `10000 ** (-i / (freq_dim / 2))`; computed in float64 as the Wan code does.
    """
    if freq_dim % 2 != 0:
        raise ValueError(f"freq_dim must be even, got {freq_dim}")
    half = freq_dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


class ImageEmbedding(nn.Module):
    """CLIP image features -> DiT width (`img_emb.proj.{0,1,3,4}`): `[B, N, image_dim]` -> `[B, N, dim]`."""

    def __init__(self, image_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(image_dim),
            nn.Linear(image_dim, image_dim),
            nn.GELU(),
            nn.Linear(image_dim, dim),
            nn.LayerNorm(dim),
        )

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        return self.proj(clip_fea)


class Head(nn.Module):
    """Output head (`head.head`, `head.modulation`): per-frame modulated LayerNorm then a linear to patch values."""

    def __init__(self, dim: int, out_values: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_values)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x `[B, L, dim]`, e `[B, Ft, dim]` (Ft = 1 or frames, L divisible by Ft) -> `[B, L, out_values]`."""
        shift, scale = (self.modulation[:, None] + e.float()[:, :, None]).unbind(2)
        frames = self.norm(x.float()).unflatten(1, (e.shape[1], -1))
        out = frames * (1 + scale[:, :, None]) + shift[:, :, None]
        return self.head(out.flatten(1, 2).to(x.dtype))

"""The tiny, randomly initialised Wan VAE the VAE tests share (z_dim 4, identity latent statistics)."""

from __future__ import annotations

import torch

from echotorrent_core.config import VAEConfig
from echotorrent_core.models.vae import WanVAE


def tiny_vae(seed: int, **bounds: int) -> WanVAE:
    """A 4-channel VAE in eval mode, initialised from `seed`; `bounds` sets `encode_context_latents` /
    `decode_context_latents`."""
    torch.manual_seed(seed)
    cfg = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                    latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4, **bounds)
    return WanVAE(cfg).eval()

"""Benchmark inputs: the preset's real architectures with seeded random weights, a random portrait and audio."""

from __future__ import annotations

import torch

from ..config import DiTConfig, get_preset
from ..models.dit import WanDiT
from ..models.vae import WanVAE


def random_models(preset: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> tuple[WanDiT, WanVAE]:
    """DiT and VAE of `preset` with random weights, in eval mode on `device` / `dtype` (timing does not depend
    on the weights' values)."""
    spec = get_preset(preset)
    torch.manual_seed(seed)
    dit = WanDiT(spec.dit).eval().to(device, dtype)
    vae = WanVAE(spec.vae).eval().to(device, dtype)
    return dit, vae


def random_inputs(cfg: DiTConfig, height: int, width: int, frames: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Portrait `[3, H, W]` in [-1, 1] and audio features `[frames, layers, audio_dim]` (one row per video frame)."""
    if cfg.audio is None:
        raise ValueError("the benchmark drives an audio-conditioned DiT; this preset has no audio adapter")
    generator = torch.Generator().manual_seed(seed)
    reference = torch.rand(3, height, width, generator=generator) * 2 - 1
    features = torch.randn(frames, cfg.audio.encoder_layers, cfg.audio.audio_dim, generator=generator)
    return reference, features

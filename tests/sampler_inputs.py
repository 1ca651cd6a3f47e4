"""Shared inputs of the streaming-sampler tests: the tiny preset's DiT and VAE, and a portrait + audio features."""

from __future__ import annotations

import torch

from echotorrent_core.config import get_preset
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE

TINY = get_preset("tiny")
AUDIO = TINY.dit.audio


def tiny_models() -> tuple[WanDiT, WanVAE]:
    """The tiny preset's DiT and VAE with seed-0 random weights, in eval mode."""
    torch.manual_seed(0)
    return WanDiT(TINY.dit).eval(), WanVAE(TINY.vae).eval()


def stream_inputs(frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random portrait `[3, 32, 32]` in [-1, 1] and audio features `[frames, layers, dim]` drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    reference = torch.rand(3, 32, 32, generator=generator) * 2 - 1
    features = torch.randn(frames, AUDIO.encoder_layers, AUDIO.audio_dim, generator=generator)
    return reference, features

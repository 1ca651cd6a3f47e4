"""Tiny synthetic data for the training-stage tests: moving-square clips and streaming-layout DiT samples."""

from __future__ import annotations

from pathlib import Path

import torch

from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.config import get_preset
from echotorrent_core.models.vae import WanVAE

TINY = get_preset("tiny")
AUDIO = TINY.dit.audio


def moving_square_clips(count: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """`[count, frames, 3, size, size]` uint8: a coloured square crossing a gradient background."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, size)[:, None].expand(size, size)
    clips = torch.zeros(count, frames, 3, size, size)
    for index in range(count):
        colour = torch.rand(3, generator=generator)
        start = torch.randint(0, size // 2, (2,), generator=generator)
        for frame in range(frames):
            clips[index, frame] = (rows * 0.6 + 0.2)[None] * torch.rand(3, 1, 1, generator=generator).clamp(0.5, 1)
            top, left = (start + frame).clamp(max=size - size // 4).tolist()
            clips[index, frame, :, top : top + size // 4, left : left + size // 4] = colour[:, None, None]
    return (clips * 255).round().to(torch.uint8)


def write_frame_windows(path: Path, count: int = 4, frames: int = 5, size: int = 32) -> Path:
    return write_state_dict(path, {"video": moving_square_clips(count, frames, size)})


@torch.no_grad()
def write_avatar_samples(path: Path, count: int = 4, latent_frames: int = 4, size: int = 32) -> Path:
    """Samples in the streaming layout: [reference frame, 4F clip frames] encoded by a tiny random VAE, + audio."""
    torch.manual_seed(0)
    vae = WanVAE(TINY.vae).eval()
    clips = moving_square_clips(count, 1 + 4 * latent_frames, size, seed=1)
    latents = vae.encode(clips.permute(0, 2, 1, 3, 4).float() / 127.5 - 1)
    latents = (latents - latents.mean()) / latents.std()
    audio = torch.randn(count, 4 * latent_frames, AUDIO.encoder_layers, AUDIO.audio_dim,
                        generator=torch.Generator().manual_seed(2))
    return write_state_dict(path, {"latents": latents, "audio": audio})

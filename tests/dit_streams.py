"""Shared tiny causal-DiT fixtures: a seeded model, a sink + chunks sequence, and streaming it through a cache."""

from __future__ import annotations

import dataclasses

import torch

from echotorrent_core.config import PRESETS
from echotorrent_core.models.conditioning import Conditioning
from echotorrent_core.models.dit import WanDiT

CFG = PRESETS["tiny"].dit
AUDIO = CFG.audio
HEIGHT = WIDTH = 4
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)
CHUNK, SINK = 3, 1


def tiny_model(image: bool = False) -> WanDiT:
    torch.manual_seed(0)
    cfg = dataclasses.replace(CFG, in_dim=36, image_dim=24) if image else CFG
    return WanDiT(cfg).eval()


def sequence(model: WanDiT, chunks: int, batch: int = 1, seed: int = 1, size: int = HEIGHT):
    """Latents `[B, 16, F, size, size]`, i2v channels or None, per-frame timesteps `[B, F]` and conditioning (audio
    for every frame) of a sink + `chunks` chunks (F = SINK + chunks * CHUNK)."""
    torch.manual_seed(seed)
    frames = SINK + chunks * CHUNK
    x = torch.randn(batch, 16, frames, size, size)
    y = torch.randn(batch, 20, frames, size, size) if model.cfg.has_image_branch else None
    t = torch.rand(batch, frames) * 1000
    clip = torch.randn(batch, 5, 24) if model.cfg.has_image_branch else None
    cond = model.prepare_conditioning(
        text=torch.randn(batch, 6, CFG.text_dim),
        clip_fea=clip,
        audio_first=torch.randn(batch, 1, AUDIO.window, AUDIO.encoder_layers, AUDIO.audio_dim),
        audio_rest=torch.randn(batch, frames - 1, AUDIO.window_vf, AUDIO.encoder_layers, AUDIO.audio_dim),
    )
    return x, y, t, cond


def chunk_bounds(frames: int) -> list[tuple[int, int]]:
    """(start, stop) of the sink and of every chunk of a `frames`-frame sequence."""
    return [(0, SINK)] + [(s, s + CHUNK) for s in range(SINK, frames, CHUNK)]


def stream(model: WanDiT, x, y, t, cond: Conditioning, cache, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run every chunk twice (read-only, then writing the cache), chunks at stream frame `start + offset`; both
    outputs concatenated over frames."""
    read_only, written = [], []
    for start, stop in chunk_bounds(x.shape[2]):
        frame_start = start + offset if start >= SINK else start
        args = (x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop), cache, frame_start)
        chunk_y = None if y is None else y[:, :, start:stop]
        read_only.append(model.forward_chunk(*args, y=chunk_y, write_cache=False))
        written.append(model.forward_chunk(*args, y=chunk_y, write_cache=True))
    return torch.cat(read_only, dim=2), torch.cat(written, dim=2)

"""The halves of a Wan VAE the refiner stage trains or freezes, and the streaming decode it trains through.

`DecoderHalf` shares `conv2` and `decoder` with a `WanVAE` (its state dict is exactly a refiner file:
`conv2.*` + `decoder.*`); `EncoderHalf` shares `encoder` and `conv1` (kept frozen: the latent space the DiT was
trained on never moves). `streaming_decode` decodes as the streaming sampler does: the sink latent alone (one frame,
which warms the causal feature cache), then chunk after chunk with the cache carried over, so training sees the
decoder exactly as inference runs it (tests/test_stage_refiner.py: equal to `StreamingDecoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.vae import WanVAE
from ...models.vae_cache import FeatureCache


class DecoderHalf(nn.Module):
    """`conv2` + `decoder` of `vae` (the same modules, not copies) with the latent statistics as buffers."""

    def __init__(self, vae: WanVAE) -> None:
        super().__init__()
        self.cfg = vae.cfg
        self.conv2 = vae.conv2
        self.decoder = vae.decoder
        self.register_buffer("latents_mean", vae.latents_mean.clone(), persistent=False)
        self.register_buffer("latents_std", vae.latents_std.clone(), persistent=False)

    def forward(self, latents: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """Normalised latents `[B, z, n, h, w]`, continuing the stream in `cache` -> unclamped frames `[B, 3, t, H, W]`
        (`t = 1 + 4 (n - 1)` on an empty cache, else `4 n`): `WanVAE.decode_steps` on these two modules."""
        raw = latents * self.latents_std.to(latents) + self.latents_mean.to(latents)
        return WanVAE.decode_steps(self, raw, cache)


class EncoderHalf(nn.Module):
    """`encoder` + `conv1` of `vae` (the same modules): what the refiner stage never changes."""

    def __init__(self, vae: WanVAE) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.conv1 = vae.conv1


def streaming_decode(decoder: DecoderHalf, latents: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Stream latents `[B, z, 1 + F, h, w]` (latent 0 = the sink) -> unclamped frames `[B, 3, 1 + 4F, H, W]`.

    The sink is decoded alone, then `chunk_frames` latents per call with the feature cache carried over (the
    sampler's order). Frame 0 is the sink's frame (inference decodes it only to warm the cache). Differentiable:
    gradients flow back through the cache into earlier chunks.
    """
    if latents.ndim != 5 or latents.shape[2] < 2:
        raise ValueError(f"expected stream latents [B, z, 1 + F >= 2, h, w], got {tuple(latents.shape)}")
    cache = FeatureCache()
    frames = [decoder(latents[:, :, :1], cache)]
    frames += [decoder(chunk, cache) for chunk in latents[:, :, 1:].split(chunk_frames, dim=2)]
    return torch.cat(frames, dim=2)

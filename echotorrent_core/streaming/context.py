"""How a chunk sees the frames before it: through the KV cache, or by recomputing the whole prefix.

Both strategies expose the same three calls, so the chunk loop is written once:
`begin(reference_latent, cond, y)` stores the sink, `predict(x, t, cond, frame_start, y)` is one network pass over
the chunk, `commit(x0, cond, frame_start, y)` makes a clean chunk part of the context (`commit_passes` network
passes: 1 for the cache, 0 for recomputation, which pays on every pass instead). `y` are the i2v condition
channels of those frames (None for models without them). Both follow `settings.rope_layout` and give the same
result, with or without a rolling window.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..models.conditioning import Conditioning
from .settings import StreamSettings


def _clean_timesteps(latents: torch.Tensor) -> torch.Tensor:
    return torch.zeros(latents.shape[0], latents.shape[2], device=latents.device)


class CachedContext:
    """Context held in the DiT's KV cache (sink + rolling window): constant cost and memory per chunk."""

    commit_passes = 1  # the clean pass at t = 0 that writes the chunk into the cache

    def __init__(self, model: torch.nn.Module, settings: StreamSettings, latent_hw: tuple[int, int],
                 stream_frames: int, dtype: torch.dtype, device: torch.device) -> None:
        """`stream_frames`: latent frames the stream will generate; the window when `settings.window_frames` is None."""
        patch = model.cfg.patch_size
        tokens_per_frame = (latent_hw[0] // patch[1]) * (latent_hw[1] // patch[2])
        window = settings.window_frames or max(stream_frames, 1)
        self.model = model
        self.cache = model.create_kv_cache(1, tokens_per_frame, settings.sink_frames, window, dtype, device,
                                           chunk_frames=settings.chunk_frames, rope_layout=settings.rope_layout)

    def begin(self, reference_latent: torch.Tensor, cond: Conditioning, y: torch.Tensor | None = None) -> None:
        """Reset the cache and write the reference latent `[1, C, 1, h, w]` as the sink."""
        self.cache.reset()
        self.commit(reference_latent, cond, 0, y)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, frame_start: int,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity for the chunk `x` `[1, C, n, h, w]` at per-frame timesteps `t` `[1, n]`."""
        return self.model.forward_chunk(x, t, cond, self.cache, frame_start, y=y, write_cache=False)

    def commit(self, x0: torch.Tensor, cond: Conditioning, frame_start: int, y: torch.Tensor | None = None) -> None:
        """One pass over the clean chunk at t = 0 that writes its keys / values into the cache."""
        self.model.forward_chunk(x0, _clean_timesteps(x0), cond, self.cache, frame_start, y=y, write_cache=True)

    @property
    def allocated_bytes(self) -> int:
        return self.cache.allocated_bytes


class RecomputedContext:
    """No cache: every pass reruns the block-causal DiT over all clean frames so far plus the chunk.

    The baseline the cache is measured against (cost grows with the video). The result equals `CachedContext`:
    the prefix frames get the same inputs, t = 0, their own conditioning and the same positions per chunk.
    Committing costs no pass; every predict pass reruns the whole prefix.
    """

    commit_passes = 0

    def __init__(self, model: torch.nn.Module, settings: StreamSettings) -> None:
        self.model = model
        self.mode = settings.attention
        self.latents: list[torch.Tensor] = []
        self.audio: list[torch.Tensor] = []
        self.conditions: list[torch.Tensor] = []

    def begin(self, reference_latent: torch.Tensor, cond: Conditioning, y: torch.Tensor | None = None) -> None:
        self.latents, self.audio, self.conditions = [], [], []
        self.commit(reference_latent, cond, 0, y)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, frame_start: int,
                y: torch.Tensor | None = None) -> torch.Tensor:
        prefix = torch.cat(self.latents, dim=2)
        full_x = torch.cat([prefix, x.to(prefix.dtype)], dim=2)
        full_t = torch.cat([_clean_timesteps(prefix), t.to(prefix.device, torch.float32)], dim=1)
        audio = None if cond.audio is None else torch.cat(self.audio + [cond.audio], dim=1)
        full_y = None if y is None else torch.cat(self.conditions + [y], dim=2)
        out = self.model(full_x, full_t, replace(cond, audio=audio), y=full_y, attention=self.mode)
        return out[:, :, -x.shape[2]:]

    def commit(self, x0: torch.Tensor, cond: Conditioning, frame_start: int, y: torch.Tensor | None = None) -> None:
        self.latents.append(x0)
        if cond.audio is not None:
            self.audio.append(cond.audio)
        if y is not None:
            self.conditions.append(y)

    @property
    def allocated_bytes(self) -> int:
        tensors = self.latents + self.audio + self.conditions
        return sum(t.numel() * t.element_size() for t in tensors)

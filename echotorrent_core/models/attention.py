"""Attention modes of the DiT, their RoPE frame-position rule, the frame-level mask and the SDPA wrappers.

Block-causal layout over the frames of a sequence (sequence-local frame indices):
frames `[0, sink_frames)` are the sink (the reference) and see only themselves; the remaining frames form chunks
of `chunk_frames`. A query in a chunk that starts at frame `s` sees the sink, the non-sink frames in
`[s - window_frames, s)` (all earlier frames when `window_frames` is None) and every frame of its own chunk.

RoPE frame positions (`BlockCausal.rope_frames`), for a chunk starting at stream frame `s`:
- "absolute": every frame at its stream index. The query-to-sink distance grows with the stream (about 1,875
  latent frames after 5 minutes, against at most ~21 in a training clip).
- "relative" (the default): sink frame `k` at `k`, every other frame shifted down by
  `max(0, s - sink_frames - window_frames)`, so the window starts right after the sink and the chunk follows it:
  chunk 10 and chunk 10,000 see the same layout. While the window is still filling the shift is 0 and the layout
  IS the absolute one, so a stream's first `sink + window` frames match a training clip exactly; with an unlimited
  window the two layouts coincide. Relative is the default because no query-to-key distance ever exceeds
  `sink + window + chunk` frames, the range the model saw in training; use "absolute" for checkpoints trained
  on long sequences with absolute positions.
The rule depends only on the query's chunk, so keys are kept before RoPE and rotated per chunk at attention
time, by the block-causal forward and by the KV cache alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROPE_LAYOUTS = ("relative", "absolute")


@dataclass(frozen=True)
class Bidirectional:
    """Every token attends to every token."""


@dataclass(frozen=True)
class BlockCausal:
    """Chunk-wise causal attention with an attention sink, an optional rolling window (frames) and the RoPE layout
    ("relative" or "absolute", see the module docstring)."""

    chunk_frames: int
    sink_frames: int = 1
    window_frames: int | None = None
    rope_layout: str = "relative"

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ValueError(f"window_frames must be >= 1 or None (unlimited), got {self.window_frames}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")

    def rope_shift(self, chunk_start: int) -> int:
        """Frames every non-sink frame is moved down by for a chunk starting at stream frame `chunk_start`."""
        if self.rope_layout == "absolute" or self.window_frames is None:
            return 0
        return max(0, chunk_start - self.sink_frames - self.window_frames)

    def rope_frames(self, frames: Sequence[int], chunk_start: int) -> list[int]:
        """RoPE frame positions of stream frames `frames` as seen by the chunk starting at `chunk_start`."""
        shift = self.rope_shift(chunk_start)
        return [f if f < self.sink_frames else f - shift for f in frames]


AttentionMode = Bidirectional | BlockCausal


def chunk_starts(num_frames: int, mode: BlockCausal) -> torch.Tensor:
    """First frame of the block each frame belongs to: `[num_frames]` long (0 for sink frames)."""
    frames = torch.arange(num_frames)
    after_sink = (frames - mode.sink_frames).clamp(min=0)
    starts = mode.sink_frames + (after_sink // mode.chunk_frames) * mode.chunk_frames
    return torch.where(frames < mode.sink_frames, torch.zeros_like(frames), starts)


def block_causal_frame_mask(num_frames: int, mode: BlockCausal) -> torch.Tensor:
    """Frame-level visibility `[num_frames (query), num_frames (key)]` bool, True where the query may attend.

    Frame-level only (tiny); the model never expands it to tokens."""
    if num_frames < 1:
        raise ValueError(f"expected at least one frame, got {num_frames}")
    frames = torch.arange(num_frames)
    start = chunk_starts(num_frames, mode)
    query_start = start[:, None]
    key = frames[None, :]
    same_block = start[:, None] == start[None, :]
    key_is_sink = key < mode.sink_frames
    earlier = (key < query_start) & ~key_is_sink
    if mode.window_frames is not None:
        earlier = earlier & (key >= query_start - mode.window_frames)
    query_is_sink = frames[:, None] < mode.sink_frames
    return same_block | (~query_is_sink & (key_is_sink | earlier))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention.

    q `[B, Lq, heads, head_dim]`, k / v `[B, Lk, heads, head_dim]`, mask `[Lq, Lk]` bool (True = attend) or None.
    Returns `[B, Lq, heads * head_dim]`.
    """
    if q.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(
            f"expected q [B, Lq, H, D] and k, v [B, Lk, H, D], got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    return heads_first_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)


def heads_first_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA on head-major views: q `[B, heads, Lq, head_dim]`, k / v `[B, heads, Lk, head_dim]` (strided views of
    cache buffers are fine) -> `[B, Lq, heads * head_dim]`."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)

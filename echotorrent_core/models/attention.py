"""Attention modes of the DiT, the block-causal mask builder and the SDPA wrapper.

Block-causal layout over the frames of a sequence (sequence-local frame indices):
frames `[0, sink_frames)` are the sink (the reference) and see only themselves; the remaining frames form chunks
of `chunk_frames`. A query in a chunk that starts at frame `s` sees the sink, the non-sink frames in
`[s - window_frames, s)` (all earlier frames when `window_frames` is None) and every frame of its own chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Bidirectional:
    """Every token attends to every token."""


@dataclass(frozen=True)
class BlockCausal:
    """Chunk-wise causal attention with an attention sink and an optional rolling window (frames)."""

    chunk_frames: int
    sink_frames: int = 1
    window_frames: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ValueError(f"window_frames must be >= 1 or None (unlimited), got {self.window_frames}")


AttentionMode = Bidirectional | BlockCausal


def chunk_starts(num_frames: int, mode: BlockCausal) -> torch.Tensor:
    """First frame of the block each frame belongs to: `[num_frames]` long (0 for sink frames)."""
    frames = torch.arange(num_frames)
    after_sink = (frames - mode.sink_frames).clamp(min=0)
    starts = mode.sink_frames + (after_sink // mode.chunk_frames) * mode.chunk_frames
    return torch.where(frames < mode.sink_frames, torch.zeros_like(frames), starts)


def block_causal_frame_mask(num_frames: int, mode: BlockCausal) -> torch.Tensor:
    """Frame-level visibility `[num_frames (query), num_frames (key)]` bool, True where the query may attend."""
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


def block_causal_mask(
    num_frames: int, tokens_per_frame: int, mode: BlockCausal, device: torch.device | None = None
) -> torch.Tensor:
    """Token-level mask `[num_frames * tokens_per_frame, num_frames * tokens_per_frame]` bool (True = attend)."""
    if tokens_per_frame < 1:
        raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}")
    frame_mask = block_causal_frame_mask(num_frames, mode).to(device)
    return frame_mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


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
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)

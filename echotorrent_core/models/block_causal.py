"""Block-causal self-attention over a whole sequence without a dense mask: one SDPA call per chunk.

Each chunk's queries attend to the keys it may see, gathered as at most two frame ranges (the sink, then the
window and the chunk itself; one range while the window still reaches the sink) and rotated at the positions the
chunk sees them at (`BlockCausal.rope_frames`), so the training forward and the streaming KV cache share one
position rule. Nothing of size `[L, L]` is built: the largest attention tensor per chunk is its keys
`[B, (sink + window + chunk) * tokens_per_frame, heads, head_dim]`, and SDPA without a mask runs the fused
(flash / memory-efficient) kernels on GPUs. Differentiable end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import BlockCausal, attention
from .rope import RopeTables, apply_rope


@dataclass(frozen=True)
class _ChunkAttention:
    """One query block: its query token range, the key token ranges it sees, and their RoPE tables."""

    queries: slice
    keys: tuple[slice, ...]
    query_rope: tuple[torch.Tensor, torch.Tensor]
    key_rope: tuple[torch.Tensor, torch.Tensor]


def _gather(x: torch.Tensor, ranges: tuple[slice, ...]) -> torch.Tensor:
    """Token ranges of `x` `[B, L, heads, head_dim]` in order (a view when there is one range)."""
    if len(ranges) == 1:
        return x[:, ranges[0]]
    return torch.cat([x[:, r] for r in ranges], dim=1)


class BlockCausalAttention:
    """The `Attend` of a block-causal `WanDiT.forward`: built once per forward, shared by every block.

    Sequence-local frame `i` is stream frame `i` for the sink and `i + frame_offset` after it (the cache's frame
    numbering: the sink at 0, `frame_offset` earlier frames not in the sequence).
    """

    def __init__(self, mode: BlockCausal, grid: tuple[int, int, int], frame_offset: int, head_dim: int,
                 theta: float, device: torch.device) -> None:
        if frame_offset < 0:
            raise ValueError(f"frame_offset must be >= 0, got {frame_offset}")
        frames, rows, cols = grid
        tables = RopeTables(head_dim, theta, rows, cols, device, remember=2 * frames + 2)
        tokens = rows * cols
        sink = min(mode.sink_frames, frames)

        def stream_frame(local: int) -> int:
            return local if local < mode.sink_frames else local + frame_offset

        blocks = [(0, sink)] if sink else []
        blocks += [(s, min(s + mode.chunk_frames, frames)) for s in range(sink, frames, mode.chunk_frames)]
        self.chunks: list[_ChunkAttention] = []
        for start, stop in blocks:
            if start < mode.sink_frames:
                key_ranges = [(0, stop)]
                chunk_start = 0
            else:
                lowest = start - mode.window_frames if mode.window_frames is not None else 0
                lowest = max(mode.sink_frames, lowest)
                key_ranges = [(0, stop)] if lowest == sink else [(0, sink), (lowest, stop)]
                key_ranges = [r for r in key_ranges if r[1] > r[0]]
                chunk_start = stream_frame(start)
            key_frames = [stream_frame(f) for a, b in key_ranges for f in range(a, b)]
            query_frames = [stream_frame(f) for f in range(start, stop)]
            self.chunks.append(_ChunkAttention(
                queries=slice(start * tokens, stop * tokens),
                keys=tuple(slice(a * tokens, b * tokens) for a, b in key_ranges),
                query_rope=tables(mode.rope_frames(query_frames, chunk_start)),
                key_rope=tables(mode.rope_frames(key_frames, chunk_start)),
            ))

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k (before RoPE), v `[B, L, heads, head_dim]` -> `[B, L, heads * head_dim]`."""
        out = []
        for chunk in self.chunks:
            queries = apply_rope(q[:, chunk.queries], *chunk.query_rope)
            keys = apply_rope(_gather(k, chunk.keys), *chunk.key_rope)
            out.append(attention(queries, keys, _gather(v, chunk.keys)))
        return torch.cat(out, dim=1)

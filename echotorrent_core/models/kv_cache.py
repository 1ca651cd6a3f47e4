"""Self-attention key/value cache of the causal DiT: attention sink + rolling window, written in place.

Layout. Every block owns one key and one value buffer `[B, heads, (sink + window + chunk) * tokens_per_frame,
head_dim]` (head-major, so SDPA reads views of them), allocated once. Keys are stored after RMSNorm and BEFORE
RoPE. Slot `f < sink_frames` holds sink frame `f`; a later frame `f` lives in ring slot
`sink + (f - sink) % (window + chunk)`. The ring holds the window plus one chunk: a chunk writes its keys / values
straight into the slots it occupies after commit, which are exactly the slots of frames that have left every
later chunk's window, so the frames a chunk reads (sink + window + itself) are always a contiguous prefix of the
buffer (the whole buffer once the window is full) and attention runs on views: no concatenation, no copy of the
cache per pass. (Irregular use, such as chunks shorter than `chunk_frames` or jumps in `frame_start`, gathers the
visible slots instead; the result is the same.)

Positions. RoPE is applied at attention time: per pass the visible keys are rotated at the positions the chunk
sees them at (`BlockCausal.rope_frames`, "relative" or "absolute") into one rotated-key workspace shared by all
blocks (four elementwise ops with `out=`; non-float32 caches round through a float32 scratch of the same size).
The cache remembers which stream frame each slot holds and keeps the sink plus the last `window_frames` committed
frames. Memory is constant: `2 * blocks + 1` (+1 float32 scratch) buffers of that size, whatever the stream length.

Without autograd (`torch.no_grad`, every inference pass) nothing is allocated per pass but the chunk's own
activations; with autograd enabled (training rollouts) the visible keys are rotated out of place and
concatenated with the chunk's, so gradients reach the chunk's keys and values (the cached ones are constants).
On GPUs the views go straight to the fused SDPA kernels (no mask), and fixed buffer addresses are what CUDA graph
capture of a pass needs (a later issue); measured at 1.3B 480x832: no key/value copy per pass, where the
concatenating cache copied 2.7 GiB per pass (bench/block_causal_memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import BlockCausal, attention, heads_first_attention
from .rope import RopeTables, apply_rope, rope_into


@dataclass(frozen=True)
class CachePass:
    """What one `forward_chunk` pass reads and writes (planned once, used by every block); grid: token rows, cols.

    chunk_slots: the slots of the chunk's frames, in frame order; context_slots: committed sink + window slots
    it sees, ascending; read_slots: both, ascending (the key order of the in-place path), `prefix` when they are
    slots `0 .. len - 1`. RoPE tables `[tokens, head_dim // 2]` of the chunk's queries and of `read_slots`; the
    frame positions of `context_slots` (their tables are made only by the autograd path).
    """

    frame_start: int
    num_frames: int
    grid: tuple[int, int]
    chunk_slots: tuple[int, ...]
    context_slots: tuple[int, ...]
    read_slots: tuple[int, ...]
    prefix: bool
    query_rope: tuple[torch.Tensor, torch.Tensor]
    read_rope: tuple[torch.Tensor, torch.Tensor]
    context_positions: tuple[int, ...]


def _runs(slots: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Consecutive runs of `slots` as (position in `slots`, first slot, length)."""
    runs: list[tuple[int, int, int]] = []
    for index, slot in enumerate(slots):
        if runs and runs[-1][1] + runs[-1][2] == slot:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((index, slot, 1))
    return runs


class KVCache:
    """Per-block sink + rolling-window key/value buffers. Create with `WanDiT.create_kv_cache`."""

    def __init__(
        self,
        num_blocks: int,
        batch: int,
        tokens_per_frame: int,
        heads: int,
        head_dim: int,
        sink_frames: int,
        window_frames: int,
        dtype: torch.dtype,
        device: torch.device | str,
        chunk_frames: int = 3,
        rope_layout: str = "relative",
        rope_theta: float = 10000.0,
    ) -> None:
        if window_frames is None or min(num_blocks, batch, tokens_per_frame, heads, head_dim, window_frames,
                                        chunk_frames) < 1 or sink_frames < 0:
            raise ValueError(
                "expected positive num_blocks, batch, tokens_per_frame, heads, head_dim, window_frames and "
                f"chunk_frames and sink_frames >= 0, got {num_blocks}, {batch}, {tokens_per_frame}, {heads}, "
                f"{head_dim}, {window_frames}, {chunk_frames} and {sink_frames}"
            )
        self.mode = BlockCausal(chunk_frames, sink_frames, window_frames, rope_layout)
        self.batch = batch
        self.tokens_per_frame = tokens_per_frame
        self.sink_frames = sink_frames
        self.window_frames = window_frames
        self.chunk_frames = chunk_frames
        self.ring_frames = window_frames + chunk_frames
        self.head_dim = head_dim
        self.rope_theta = rope_theta
        self.device = torch.device(device)
        shape = (batch, heads, self.num_slots * tokens_per_frame, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_blocks)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_blocks)]
        self.rotated_keys = torch.zeros(shape, dtype=dtype, device=device)
        self.scratch = None if dtype == torch.float32 else torch.zeros(shape, dtype=torch.float32, device=device)
        self.slot_frames: list[int] = [-1] * self.num_slots
        self._tables: dict[tuple[int, int], RopeTables] = {}

    @property
    def rope_layout(self) -> str:
        return self.mode.rope_layout

    @property
    def dtype(self) -> torch.dtype:
        return self.rotated_keys.dtype

    @property
    def num_slots(self) -> int:
        return self.sink_frames + self.ring_frames

    @property
    def valid_frames(self) -> int:
        """Number of slots holding a committed frame (at most sink_frames + window_frames)."""
        return sum(frame >= 0 for frame in self.slot_frames)

    @property
    def buffers(self) -> list[torch.Tensor]:
        """Every tensor the cache allocated (keys, values, the rotated-key workspace, the float32 scratch)."""
        extra = [self.rotated_keys] + ([] if self.scratch is None else [self.scratch])
        return self.keys + self.values + extra

    @property
    def allocated_bytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(t.numel() * t.element_size() for t in self.buffers)

    def reset(self) -> None:
        """Forget every stored frame; the buffers are kept and reused."""
        self.slot_frames = [-1] * self.num_slots

    def slot_of(self, frame: int) -> int:
        """Slot that stores stream frame `frame`."""
        if frame < self.sink_frames:
            return frame
        return self.sink_frames + (frame - self.sink_frames) % self.ring_frames

    def begin_pass(self, frame_start: int, num_frames: int, rows: int, cols: int) -> CachePass:
        """Plan one pass of the chunk `[frame_start, frame_start + num_frames)` on a `rows x cols` token grid.

        The chunk's slots are claimed: frames committed there (all outside this and every later chunk's window)
        are forgotten. A chunk inside the sink must be the whole sink (frame_start 0, num_frames = sink_frames).
        """
        if rows * cols != self.tokens_per_frame:
            raise ValueError(f"cache holds {self.tokens_per_frame} tokens per frame, the chunk has {rows * cols}")
        sink = self.sink_frames
        if frame_start < 0:
            raise ValueError(f"frame_start must be >= 0, got {frame_start}")
        if frame_start < sink and (frame_start != 0 or num_frames != sink):
            raise ValueError(
                f"a chunk inside the sink must be the whole sink (frame_start 0, {sink} frames), got "
                f"frame_start {frame_start} with {num_frames} frames"
            )
        if frame_start >= sink and not 1 <= num_frames <= self.chunk_frames:
            raise ValueError(
                f"this cache takes chunks of 1 to {self.chunk_frames} frames (create_kv_cache(chunk_frames=...)), "
                f"got {num_frames}"
            )
        frames = range(frame_start, frame_start + num_frames)
        chunk_slots = tuple(self.slot_of(f) for f in frames)
        for slot in chunk_slots:
            self.slot_frames[slot] = -1
        context_slots: tuple[int, ...] = ()
        if frame_start >= sink:
            lowest = max(sink, frame_start - self.window_frames)
            context_slots = tuple(slot for slot, frame in enumerate(self.slot_frames)
                                  if 0 <= frame < sink or lowest <= frame < frame_start)
        read_slots = tuple(sorted(context_slots + chunk_slots))
        frame_in = dict(zip(chunk_slots, frames)) | {s: self.slot_frames[s] for s in context_slots}
        tables = self._tables_for(rows, cols)

        def positions(slots: tuple[int, ...]) -> list[int]:
            return self.mode.rope_frames([frame_in[slot] for slot in slots], frame_start)

        return CachePass(
            frame_start, num_frames, (rows, cols), chunk_slots, context_slots, read_slots,
            prefix=read_slots == tuple(range(len(read_slots))),
            query_rope=tables(self.mode.rope_frames(list(frames), frame_start)),
            read_rope=tables(positions(read_slots)),
            context_positions=tuple(positions(context_slots)),
        )

    def write(self, block: int, step: CachePass, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store one block's chunk keys (before RoPE) and values `[B, num_frames * tokens_per_frame, heads,
        head_dim]` into the chunk's slots (detached from autograd)."""
        n = self.tokens_per_frame
        expected = (self.batch, step.num_frames * n, self.keys[block].shape[1], self.head_dim)
        if tuple(keys.shape) != expected or keys.shape != values.shape:
            raise ValueError(f"expected chunk keys and values {expected}, got {tuple(keys.shape)} and "
                             f"{tuple(values.shape)}")
        for position, slot, length in _runs(step.chunk_slots):
            source = slice(position * n, (position + length) * n)
            target = slice(slot * n, (slot + length) * n)
            self.keys[block][:, :, target].copy_(keys[:, source].detach().transpose(1, 2))
            self.values[block][:, :, target].copy_(values[:, source].detach().transpose(1, 2))

    def _read(self, buffer: torch.Tensor, slots: tuple[int, ...], contiguous: bool) -> torch.Tensor:
        """Tokens of `slots` of a head-major buffer: a view when they are slots 0 .. len - 1, else a gather."""
        n = self.tokens_per_frame
        if contiguous:
            return buffer[:, :, : len(slots) * n]
        index = (torch.tensor(slots, device=buffer.device)[:, None] * n
                 + torch.arange(n, device=buffer.device)).flatten()
        return buffer.index_select(2, index)

    def attend(self, block: int, step: CachePass, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Self-attention of the chunk for one block, in place (no autograd): write the chunk's keys / values,
        rotate the keys of `read_slots` into the workspace, attend over views. q, k (before RoPE), v
        `[B, n * tokens_per_frame, heads, head_dim]` -> `[B, n * tokens_per_frame, heads * head_dim]`."""
        self.write(block, step, k, v)
        length = len(step.read_slots) * self.tokens_per_frame
        keys = self._read(self.keys[block], step.read_slots, step.prefix)
        values = self._read(self.values[block], step.read_slots, step.prefix)
        rotated = self.rotated_keys[:, :, :length]
        scratch = None if self.scratch is None else self.scratch[:, :, :length]
        rope_into(keys, *step.read_rope, out=rotated, scratch=scratch)
        queries = apply_rope(q, *step.query_rope).transpose(1, 2)
        return heads_first_attention(queries, rotated, values)

    def attend_with_grad(self, block: int, step: CachePass, q: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor) -> torch.Tensor:
        """The same attention, differentiable in q, k, v (cached frames are constants): the visible cached keys
        are rotated out of place and concatenated with the chunk's. Stores the chunk like `attend`."""
        queries = apply_rope(q, *step.query_rope)
        keys = apply_rope(k, *step.query_rope)
        values = v
        if step.context_slots:
            contiguous = step.context_slots == tuple(range(len(step.context_slots)))
            cached_keys = self._read(self.keys[block], step.context_slots, contiguous).transpose(1, 2)
            cached_values = self._read(self.values[block], step.context_slots, contiguous).transpose(1, 2)
            context_rope = self._tables_for(*step.grid)(step.context_positions)
            keys = torch.cat([apply_rope(cached_keys, *context_rope), keys], dim=1)
            values = torch.cat([cached_values.to(v.dtype), v], dim=1)
        out = attention(queries, keys, values)
        self.write(block, step, k, v)
        return out

    def commit(self, frame_start: int, num_frames: int) -> None:
        """Record that every block has stored the chunk `[frame_start, frame_start + num_frames)`; non-sink
        frames older than the last `window_frames` are forgotten (their slots take the next chunk)."""
        for frame in range(frame_start, frame_start + num_frames):
            self.slot_frames[self.slot_of(frame)] = frame
        oldest = frame_start + num_frames - self.window_frames
        self.slot_frames = [f if f < self.sink_frames or f >= oldest else -1 for f in self.slot_frames]

    def _tables_for(self, rows: int, cols: int) -> RopeTables:
        if (rows, cols) not in self._tables:
            self._tables[(rows, cols)] = RopeTables(self.head_dim, self.rope_theta, rows, cols, self.device,
                                                    remember=16)
        return self._tables[(rows, cols)]

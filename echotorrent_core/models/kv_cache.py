"""Self-attention key/value cache of the causal DiT: attention sink + rolling window of whole frames.

Every block owns one key and one value buffer `[B, (sink_frames + window_frames) * tokens_per_frame, heads,
head_dim]`, allocated once. Slot `f` (f < sink_frames) holds sink frame `f`; frame `f >= sink_frames` goes to
window slot `sink_frames + (f - sink_frames) % window_frames`, so the window is a ring buffer and memory stays
constant however long the stream runs. Keys are stored after RMSNorm and RoPE. The cache remembers which
absolute frame each slot holds, so a chunk reads exactly the frames that block-causal attention lets it see.
"""

from __future__ import annotations

import torch


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
    ) -> None:
        if min(num_blocks, batch, tokens_per_frame, heads, head_dim, window_frames) < 1 or sink_frames < 0:
            raise ValueError(
                "expected positive num_blocks, batch, tokens_per_frame, heads, head_dim and window_frames and "
                f"sink_frames >= 0, got {num_blocks}, {batch}, {tokens_per_frame}, {heads}, {head_dim}, "
                f"{window_frames} and {sink_frames}"
            )
        self.batch = batch
        self.tokens_per_frame = tokens_per_frame
        self.sink_frames = sink_frames
        self.window_frames = window_frames
        shape = (batch, (sink_frames + window_frames) * tokens_per_frame, heads, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_blocks)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_blocks)]
        self.slot_frames: list[int] = [-1] * (sink_frames + window_frames)

    @property
    def num_slots(self) -> int:
        return self.sink_frames + self.window_frames

    @property
    def valid_frames(self) -> int:
        """Number of slots currently holding a frame (at most sink_frames + window_frames)."""
        return sum(frame >= 0 for frame in self.slot_frames)

    @property
    def allocated_bytes(self) -> int:
        """Bytes held by all key and value buffers."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def reset(self) -> None:
        """Forget every stored frame; the buffers are kept and reused."""
        self.slot_frames = [-1] * self.num_slots

    def slot_of(self, frame: int) -> int:
        """Slot that stores absolute frame index `frame`."""
        if frame < self.sink_frames:
            return frame
        return self.sink_frames + (frame - self.sink_frames) % self.window_frames

    def visible_slots(self, frame_start: int) -> list[int]:
        """Slots a chunk starting at `frame_start` attends to (the sink and the window frames before it), ascending.

        Keys already carry their RoPE positions, so slot order does not matter to attention; ascending order
        makes a full cache one contiguous view. A chunk inside the sink (frame_start < sink_frames) sees nothing.
        """
        if frame_start < self.sink_frames:
            return []
        lowest = max(self.sink_frames, frame_start - self.window_frames)
        return [
            slot
            for slot, frame in enumerate(self.slot_frames)
            if 0 <= frame < self.sink_frames or lowest <= frame < frame_start
        ]

    def read(self, block: int, slots: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `slots` for one block: each `[B, len(slots) * tokens_per_frame, heads, head_dim]`."""
        keys, values = self.keys[block], self.values[block]
        n = self.tokens_per_frame
        first = slots[0] if slots else 0
        if slots == list(range(first, first + len(slots))):
            return keys[:, first * n : (first + len(slots)) * n], values[:, first * n : (first + len(slots)) * n]
        index = (torch.tensor(slots, device=keys.device)[:, None] * n + torch.arange(n, device=keys.device)).flatten()
        return keys.index_select(1, index), values.index_select(1, index)

    def frames_to_store(self, frame_start: int, num_frames: int) -> range:
        """Frames of a chunk that survive writing: all of them, or the last `window_frames` of a longer chunk."""
        if frame_start < self.sink_frames:
            return range(frame_start, frame_start + num_frames)
        return range(max(frame_start, frame_start + num_frames - self.window_frames), frame_start + num_frames)

    def write(self, block: int, frame_start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store one block's chunk keys / values `[B, num_frames * tokens_per_frame, heads, head_dim]`."""
        n = self.tokens_per_frame
        if keys.shape != values.shape or keys.shape[1] % n != 0 or keys.shape[0] != self.batch:
            raise ValueError(
                f"expected chunk keys and values [{self.batch}, frames * {n}, heads, head_dim], "
                f"got {tuple(keys.shape)} and {tuple(values.shape)}"
            )
        for frame in self.frames_to_store(frame_start, keys.shape[1] // n):
            local = frame - frame_start
            slot = self.slot_of(frame)
            self.keys[block][:, slot * n : (slot + 1) * n] = keys[:, local * n : (local + 1) * n]
            self.values[block][:, slot * n : (slot + 1) * n] = values[:, local * n : (local + 1) * n]

    def commit(self, frame_start: int, num_frames: int) -> None:
        """Record that every block has stored the chunk `[frame_start, frame_start + num_frames)`."""
        for frame in self.frames_to_store(frame_start, num_frames):
            self.slot_frames[self.slot_of(frame)] = frame

"""The KV cache is allocated once and written in place: no copy of the cache per pass, however long the stream."""

from __future__ import annotations

import contextlib

import pytest
import torch
from dit_streams import CFG, CHUNK, SINK, TOKENS_PER_FRAME, sequence, tiny_model

from echotorrent_core.benchmark.allocations import AllocationRecorder
from echotorrent_core.models.attention import BlockCausal

WINDOW = 12  # sink + window keys of a block outnumber every activation of a 3-frame chunk of the tiny model
CHUNKS = 60


def _pass(model, cache, x, t, cond, frame_start: int, write: bool) -> torch.Tensor:
    n = x.shape[2]
    audio = cond.audio_frames(SINK, SINK + n) if frame_start >= SINK else cond.audio_frames(0, SINK)
    return model.forward_chunk(x, t, audio, cache, frame_start, write_cache=write)


def test_storage_is_allocated_once_and_no_pass_copies_the_cache() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=1)
    sink_x, chunk_x = x[:, :, :SINK], x[:, :, SINK:]
    sink_t, chunk_t = t[:, :SINK], t[:, SINK:]
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.float32, "cpu", chunk_frames=CHUNK)
    slots = SINK + WINDOW + CHUNK
    assert cache.allocated_bytes == (2 * CFG.num_layers + 1) * slots * TOKENS_PER_FRAME * CFG.dim * 4
    pointers = [b.data_ptr() for b in cache.buffers]
    context_numel = (SINK + WINDOW) * TOKENS_PER_FRAME * CFG.dim  # one block's cached keys (or values)
    per_pass = {}
    with torch.no_grad():
        _pass(model, cache, sink_x, sink_t, cond, 0, write=True)
        for index in range(CHUNKS):
            start = SINK + index * CHUNK
            for write in (False, True):
                with AllocationRecorder() if index in (50, CHUNKS - 5) else contextlib.nullcontext() as recorder:
                    _pass(model, cache, chunk_x, chunk_t, cond, start, write)
                if recorder is not None:
                    per_pass[index, write] = recorder.allocations
            assert cache.valid_frames == min(SINK + (index + 1) * CHUNK, SINK + WINDOW)
    assert [b.data_ptr() for b in cache.buffers] == pointers
    last = SINK + CHUNKS * CHUNK
    assert sorted(f for f in cache.slot_frames if f >= 0) == [0] + list(range(last - WINDOW, last))
    # steady state (the ring has 15 slots, so the layout repeats every 5 chunks): the same allocations, none
    # of them as large as the cached keys of one block (a concatenation of the cache would be larger still)
    for write in (False, True):
        assert per_pass[50, write] == per_pass[CHUNKS - 5, write]
        largest = max(a.numel for a in per_pass[CHUNKS - 5, write])
        assert largest < context_numel, largest
    frame_keys = TOKENS_PER_FRAME * CFG.dim
    assert not any(a.op.startswith("aten.cat") and a.numel >= frame_keys for a in per_pass[CHUNKS - 5, False])


def test_the_frames_a_chunk_reads_are_a_prefix_of_the_buffers() -> None:
    cache = tiny_model().create_kv_cache(1, 4, sink_frames=1, window_frames=4, dtype=torch.float32, device="cpu",
                                         chunk_frames=2)
    seen = []
    for start in [0] + list(range(1, 21, 2)):
        step = cache.begin_pass(start, 1 if start == 0 else 2, 2, 2)
        seen.append((step.prefix, len(step.read_slots)))
        cache.commit(start, step.num_frames)
    assert seen == [(True, 1), (True, 3), (True, 5)] + [(True, 7)] * 8  # sink, filling, then all 7 slots
    assert cache.valid_frames == 1 + 4
    step = cache.begin_pass(21, 2, 2, 2)
    assert step.context_slots == tuple(sorted(cache.slot_of(f) for f in [0, 17, 18, 19, 20]))
    assert cache.rope_layout == "relative"
    assert cache.mode.rope_frames([0, 17, 21], 21) == [0, 1, 5]


def test_irregular_chunks_gather_and_still_equal_the_forward() -> None:
    """Chunks shorter than the cache's chunk capacity leave holes in the ring: the visible slots are gathered."""
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=4)
    frames, window = x.shape[2], 4
    with torch.no_grad():
        expected = model(x, t, cond, attention=BlockCausal(1, SINK, window))
        cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, window, torch.float32, "cpu", chunk_frames=3)
        outputs, prefixes = [], []
        for start in range(frames):
            stop = start + 1
            step = cache.begin_pass(start, 1, 2, 2)
            prefixes.append(step.prefix)
            outputs.append(model.forward_chunk(x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop),
                                               cache, start, write_cache=True))
    assert not all(prefixes)
    assert (torch.cat(outputs, dim=2) - expected).abs().max() < 1e-4


def test_capacity_and_dtype_errors() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=1)
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.float32, "cpu", chunk_frames=2)
    with torch.no_grad():
        _pass(model, cache, x[:, :, :SINK], t[:, :SINK], cond, 0, write=True)
        with pytest.raises(ValueError, match=r"chunks of 1 to 2 frames \(create_kv_cache\(chunk_frames=...\)\)"):
            _pass(model, cache, x[:, :, SINK:], t[:, SINK:], cond, SINK, write=False)
        half = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.bfloat16, "cpu")
        with pytest.raises(ValueError, match="the cache holds torch.bfloat16, the model computes in torch.float32"):
            _pass(model, half, x[:, :, :SINK], t[:, :SINK], cond, 0, write=True)
    with pytest.raises(ValueError, match="rope_layout must be one of"):
        model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.float32, "cpu", rope_layout="rotated")

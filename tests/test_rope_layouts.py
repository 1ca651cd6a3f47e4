"""RoPE layouts of the causal DiT: a chunk deep in a stream sees what it saw early on (relative), and the
block-causal forward and the KV cache follow the same position rule."""

from __future__ import annotations

import copy

import pytest
import torch
from dit_streams import CHUNK, SINK, TOKENS_PER_FRAME, chunk_bounds, sequence, stream, tiny_model

from echotorrent_core.models.attention import BlockCausal
from echotorrent_core.streaming import StreamSettings

WINDOW = 6
RING = WINDOW + CHUNK  # slots of the cache's ring: window + one chunk


def test_position_rule() -> None:
    relative = BlockCausal(CHUNK, SINK, WINDOW)
    assert relative.rope_layout == "relative"
    # window still reaching the sink: plain stream indices
    assert relative.rope_frames([0, 1, 2, 3, 4, 5, 6], chunk_start=4) == [0, 1, 2, 3, 4, 5, 6]
    # deep in the stream: sink at 0, the window right after it, the chunk after the window
    deep = 1 + 3 * 10_000
    frames = [0] + list(range(deep - WINDOW, deep + CHUNK))
    assert relative.rope_frames(frames, deep) == list(range(1 + WINDOW + CHUNK))
    assert relative.rope_frames(frames, deep) == relative.rope_frames([0] + list(range(25, 34)), 31)
    absolute = BlockCausal(CHUNK, SINK, WINDOW, "absolute")
    assert absolute.rope_frames(frames, deep) == frames
    assert BlockCausal(CHUNK, SINK, None).rope_frames(frames, deep) == frames  # unlimited: nothing rolls
    with pytest.raises(ValueError, match="rope_layout must be one of"):
        BlockCausal(CHUNK, SINK, WINDOW, "rotary")
    with pytest.raises(ValueError, match="rope_layout must be one of"):
        StreamSettings(rope_layout="rebased")
    assert StreamSettings(window_frames=4, rope_layout="absolute").attention == BlockCausal(3, 1, 4, "absolute")


def _stream_chunks(model, cache, x, t, cond, bounds) -> None:
    for start, stop in bounds:
        model.forward_chunk(x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop), cache, start,
                            write_cache=True)


@pytest.mark.parametrize("layout", ["relative", "absolute"])
def test_chunk_10000_equals_chunk_10_given_the_same_cache(layout: str) -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=11)
    bounds = chunk_bounds(x.shape[2])
    start, stop = bounds[-1]  # chunk 10 (counted from 0), frames 31..33
    shift = 3 * (10_000 - 10)
    assert shift % RING == 0  # every frame keeps its slot: the same cache contents, labelled 29,970 frames later
    with torch.no_grad():
        near = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.float32, "cpu", rope_layout=layout)
        _stream_chunks(model, near, x, t, cond, bounds[:-1])
        far = copy.deepcopy(near)
        far.slot_frames = [f if f < SINK else f + shift for f in near.slot_frames]
        args = (x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop))
        at_10 = model.forward_chunk(*args, near, start, write_cache=True)
        at_10000 = model.forward_chunk(*args, far, start + shift, write_cache=True)
    assert start + shift == SINK + 10_000 * CHUNK
    difference = (at_10 - at_10000).abs().max().item()
    print(f"{layout}: chunk 10 vs chunk 10,000 max abs diff {difference:.3g}")
    if layout == "relative":
        assert difference < 1e-5
        assert all((a - b).abs().max() < 1e-5 for a, b in zip(near.keys + near.values, far.keys + far.values))
    else:
        assert difference > 1e-3  # the sink sits 30,000 frames away: positions matter, so the check can fail


@pytest.mark.parametrize("layout", ["relative", "absolute"])
def test_forward_with_frame_offset_equals_chunks_later_in_the_stream(layout: str) -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=4)
    offset = 1_000
    with torch.no_grad():
        expected = model(x, t, cond, attention=BlockCausal(CHUNK, SINK, WINDOW, layout), frame_offset=offset)
        cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, WINDOW, torch.float32, "cpu", rope_layout=layout)
        read_only, written = stream(model, x, None, t, cond, cache, offset=offset)
        later = model(x, t, cond, attention=BlockCausal(CHUNK, SINK, WINDOW, layout), frame_offset=7 * offset)
    assert (read_only - expected).abs().max() < 1e-4 and (written - expected).abs().max() < 1e-4
    moved = (later - expected)[:, :, SINK:].abs().max()
    assert moved > 1e-3 if layout == "absolute" else moved < 1e-5  # relative: the same 1,000 or 7,000 frames in


def test_relative_equals_absolute_until_the_window_rolls() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=4)  # chunks start at 1, 4, 7, 10; the window rolls for the last one
    with torch.no_grad():
        relative = model(x, t, cond, attention=BlockCausal(CHUNK, SINK, WINDOW, "relative"))
        absolute = model(x, t, cond, attention=BlockCausal(CHUNK, SINK, WINDOW, "absolute"))
    filling = SINK + WINDOW + CHUNK
    assert torch.equal(relative[:, :, :filling], absolute[:, :, :filling])
    assert (relative[:, :, filling:] - absolute[:, :, filling:]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotation_into_a_buffer_equals_the_differentiable_one(dtype) -> None:
    from echotorrent_core.models.rope import RopeTables, apply_rope, rope_into

    tables = RopeTables(head_dim=32, theta=10000.0, height=2, width=3, device="cpu")
    cos, sin = tables([0, 7, 8, 9])
    assert tables([0, 7, 8, 9])[0] is cos  # remembered, not rebuilt
    torch.manual_seed(0)
    x = torch.randn(2, 4 * 6, 3, 32).to(dtype)  # [B, S, heads, head_dim]
    expected = apply_rope(x, cos, sin)
    buffer = torch.zeros(2, 3, 40, 32, dtype=dtype)  # head-major, longer than needed: write into a prefix view
    scratch = None if dtype == torch.float32 else torch.zeros(2, 3, 24, 32)
    rope_into(x.transpose(1, 2), cos, sin, out=buffer[:, :, :24], scratch=scratch)
    # float32 arithmetic in both, rounded once to the dtype (the fused multiply-add may differ in the last bit)
    ulp = 2.0**-23 if dtype == torch.float32 else 2.0**-7
    difference = (buffer[:, :, :24].transpose(1, 2).float() - expected.float()).abs()
    assert (difference <= ulp * expected.float().abs().clamp(min=1.0)).all()
    assert not buffer[:, :, 24:].any()
    if dtype != torch.float32:
        with pytest.raises(ValueError, match="float32 scratch"):
            rope_into(x.transpose(1, 2), cos, sin, out=buffer[:, :, :24])

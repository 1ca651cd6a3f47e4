"""The block-causal training forward: no dense [L, L] mask or scores, gradients flow, and forward_chunk with
autograd gives the same outputs and input gradients."""

from __future__ import annotations

import pytest
import torch
from dit_streams import CHUNK, SINK, chunk_bounds, sequence, tiny_model

from echotorrent_core.benchmark.allocations import AllocationRecorder
from echotorrent_core.models.attention import BlockCausal, block_causal_frame_mask

SIZE = 8  # 8 x 8 latents: 16 tokens per frame, L = 13 * 16 = 208, so L * L outnumbers every activation


@pytest.mark.parametrize("window", [None, 3])
def test_no_sequence_by_sequence_tensor_is_allocated(window) -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=4, size=SIZE)
    tokens = x.shape[2] * (SIZE // 2) ** 2
    mode = BlockCausal(CHUNK, SINK, window)
    with AllocationRecorder() as recorder:
        out = model(x, t, cond, attention=mode)
        out.square().mean().backward()
    assert recorder.quadratic(tokens) == [], recorder.largest()
    with AllocationRecorder() as dense:  # what the recorder sees of a token-level mask: the check can fail
        block_causal_frame_mask(x.shape[2], mode).repeat_interleave(16, 0).repeat_interleave(16, 1)
    assert dense.quadratic(tokens)


def test_gradients_flow_and_forward_chunk_with_autograd_matches_the_forward() -> None:
    model = tiny_model()
    with torch.no_grad():  # the conditioning is an input here, not part of the graph
        x, _, t, cond = sequence(model, chunks=3)
    mode = BlockCausal(CHUNK, SINK, 3)  # the last chunk's window has rolled past the first chunk
    bounds = chunk_bounds(x.shape[2])
    start, stop = bounds[-1]
    inputs = x.clone().requires_grad_()
    out = model(inputs, t, cond, attention=mode)
    out[:, :, start:stop].square().mean().backward()
    weight_grad = model.blocks[0].self_attn.k.weight.grad.clone()
    assert inputs.grad[:, :, start:stop].abs().sum() > 0
    assert inputs.grad[:, :, :start].abs().sum() > 0  # earlier chunks act through their keys and values
    assert weight_grad.abs().sum() > 0
    model.zero_grad()

    cache = model.create_kv_cache(1, 4, SINK, 3, torch.float32, "cpu")
    with torch.no_grad():
        for a, b in bounds[:-1]:
            model.forward_chunk(x[:, :, a:b], t[:, a:b], cond.audio_frames(a, b), cache, a, write_cache=True)
    chunk = x[:, :, start:stop].clone().requires_grad_()
    streamed = model.forward_chunk(chunk, t[:, start:stop], cond.audio_frames(start, stop), cache, start)
    assert streamed.requires_grad
    streamed.square().mean().backward()
    assert (streamed - out[:, :, start:stop]).abs().max() < 1e-4
    # earlier frames do not depend on the last chunk: both gradients w.r.t. its latents are the same
    assert (chunk.grad - inputs.grad[:, :, start:stop]).abs().max() < 1e-5 * max(1.0, chunk.grad.abs().max())
    with torch.no_grad():
        again = model.forward_chunk(x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop), cache,
                                    start)
    assert (again - streamed).abs().max() < 1e-5


def test_meta_measurement_at_a_real_layout_finds_no_quadratic_tensor() -> None:
    """The bench's meta-device measurement (bench/block_causal_memory.py runs it at 1.3B, 21 frames, 480x832)."""
    from echotorrent_core.benchmark.allocations import forward_allocations
    from echotorrent_core.config import get_preset

    found = forward_allocations(get_preset("tiny"), 13, 128, 128, BlockCausal(CHUNK, SINK, None), torch.float32)
    assert found.tokens == 13 * 8 * 8 and found.count > 100
    assert found.quadratic == () and found.largest.numel < found.tokens**2

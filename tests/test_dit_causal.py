"""Block-causal WanDiT: streaming with the KV cache equals one block-causal forward (both RoPE layouts); causality."""

from __future__ import annotations

import pytest
import torch
from dit_streams import AUDIO, CFG, CHUNK, SINK, TOKENS_PER_FRAME, sequence, stream, tiny_model

from echotorrent_core.models.attention import Bidirectional, BlockCausal, block_causal_frame_mask

@pytest.mark.parametrize("layout", ["relative", "absolute"])
@pytest.mark.parametrize(
    ("window", "chunks", "image", "batch"),
    [(None, 4, False, 2), (None, 3, True, 1), (6, 9, False, 1), (2, 5, False, 1)],
    ids=["unlimited", "unlimited-i2v", "window6-evicting", "window-shorter-than-chunk"],
)
def test_streaming_with_cache_equals_block_causal_forward(window, chunks, image, batch, layout) -> None:
    model = tiny_model(image)
    x, y, t, cond = sequence(model, chunks, batch)
    frames = x.shape[2]
    with torch.no_grad():
        expected = model(x, t, cond, y=y, attention=BlockCausal(CHUNK, SINK, window, layout))
        cache_window = frames - SINK if window is None else window
        cache = model.create_kv_cache(batch, TOKENS_PER_FRAME, SINK, cache_window, torch.float32, "cpu",
                                      rope_layout=layout)
        read_only, written = stream(model, x, y, t, cond, cache)
    assert expected.abs().mean() > 0.1
    assert (read_only - expected).abs().max() < 1e-4
    assert (written - expected).abs().max() < 1e-4
    if window is not None:
        assert cache.valid_frames == SINK + window
        assert frames - SINK > window  # frames were evicted


def test_frame_mask_layout() -> None:
    mode = BlockCausal(chunk_frames=2, sink_frames=1, window_frames=2)
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0],  # sink: only itself
            [1, 1, 1, 0, 0, 0, 0],  # chunk [1, 3): sink + own chunk
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],  # chunk [3, 5): sink + window [1, 3) + own chunk
            [1, 1, 1, 1, 1, 0, 0],
            [1, 0, 0, 1, 1, 1, 1],  # chunk [5, 7): sink + window [3, 5) + own chunk
            [1, 0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_causal_frame_mask(7, mode), expected)
    unlimited = block_causal_frame_mask(7, BlockCausal(2, 1, None))
    assert torch.equal(unlimited, torch.ones(7, 7).tril().bool() | expected)


def test_block_causal_ignores_later_chunks_and_bidirectional_does_not() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=3)
    perturbed = x.clone()
    perturbed[:, :, SINK + CHUNK :] += torch.randn_like(perturbed[:, :, SINK + CHUNK :])
    earlier = slice(0, SINK + CHUNK)
    with torch.no_grad():
        causal = BlockCausal(CHUNK, SINK, None)
        a, b = model(x, t, cond, attention=causal), model(perturbed, t, cond, attention=causal)
        c, d = model(x, t, cond, attention=Bidirectional()), model(perturbed, t, cond, attention=Bidirectional())
    assert (a[:, :, earlier] - b[:, :, earlier]).abs().max() < 1e-6
    assert (a[:, :, SINK + CHUNK :] - b[:, :, SINK + CHUNK :]).abs().max() > 1e-2
    assert (c[:, :, earlier] - d[:, :, earlier]).abs().max() > 1e-3


def test_reset_reuses_memory_and_restarts_the_stream() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=4)
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, 3, torch.float32, "cpu")
    pointers = [b.data_ptr() for b in cache.keys + cache.values]
    with torch.no_grad():
        first, _ = stream(model, x, None, t, cond, cache)
        cache.reset()
        assert cache.valid_frames == 0
        second, _ = stream(model, x, None, t, cond, cache)
    assert [b.data_ptr() for b in cache.keys + cache.values] == pointers
    assert torch.equal(first, second)


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny_model()
    x, _, t, cond = sequence(model, chunks=1)
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, 3, torch.float32, "cpu")
    with torch.no_grad():
        with pytest.raises(ValueError, match="has 12 channels, the DiT expects in_dim = 16"):
            model(x[:, :12], t, cond)
        with pytest.raises(ValueError, match=r"t must be a tensor \[B=1\] or \[B=1, F=4\]"):
            model(x, t[:, :2], cond)
        with pytest.raises(ValueError, match="conditioning audio covers"):
            model(x[:, :, :2], t[:, :2], cond)
        with pytest.raises(ValueError, match="tokens per frame"):
            model.forward_chunk(x[:, :, :1, :2], t[:, :1], cond.audio_frames(0, 1), cache, 0)
        with pytest.raises(ValueError, match="must be the whole sink"):
            model.forward_chunk(x[:, :, :2], t[:, :2], cond.audio_frames(0, 2), cache, 0)
        with pytest.raises(ValueError, match="multiples of the patch"):
            model(x[..., :3], t, cond)
        with pytest.raises(ValueError, match="finite window_frames"):
            model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, None, torch.float32, "cpu")
        with pytest.raises(ValueError, match="no image branch"):
            model.prepare_conditioning(text=torch.randn(1, 4, CFG.text_dim), clip_fea=torch.randn(1, 5, 24))
        with pytest.raises(ValueError, match=r"text must be \[B=1, L <= 8, 32\]"):
            model.prepare_conditioning(text=torch.randn(1, 9, CFG.text_dim))
    with pytest.raises(ValueError, match="chunk_frames must be >= 1"):
        BlockCausal(chunk_frames=0)


def test_bfloat16_model_accepts_float32_inputs() -> None:
    model = tiny_model()
    x, _, t, _ = sequence(model, chunks=1)
    text = torch.randn(1, 6, CFG.text_dim)
    first = torch.randn(1, 1, AUDIO.window, AUDIO.encoder_layers, AUDIO.audio_dim)
    rest = torch.randn(1, CHUNK, AUDIO.window_vf, AUDIO.encoder_layers, AUDIO.audio_dim)
    with torch.no_grad():
        expected = model(x, t, model.prepare_conditioning(text, None, first, rest), attention=BlockCausal(CHUNK, SINK))
        model = model.to(torch.bfloat16)
        cond = model.prepare_conditioning(text, None, first, rest)
        assert cond.text.dtype == cond.audio.dtype == torch.bfloat16
        full = model(x, t, cond, attention=BlockCausal(CHUNK, SINK))
        cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, 3, torch.bfloat16, "cpu")
        streamed, _ = stream(model, x, None, t, cond, cache)
    assert full.dtype == streamed.dtype == torch.bfloat16
    scale = expected.abs().max()
    assert (full.float() - expected).abs().max() < 0.05 * scale
    assert (streamed.float() - full.float()).abs().max() < 0.05 * scale

"""Block-causal WanDiT: streaming with the KV cache equals one masked forward; causality; constant cache memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echotorrent_core.config import PRESETS
from echotorrent_core.models.attention import Bidirectional, BlockCausal, block_causal_frame_mask
from echotorrent_core.models.conditioning import Conditioning
from echotorrent_core.models.dit import WanDiT

CFG = PRESETS["tiny"].dit
AUDIO = CFG.audio
HEIGHT = WIDTH = 4
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)
CHUNK, SINK = 3, 1


def _model(image: bool = False) -> WanDiT:
    torch.manual_seed(0)
    cfg = dataclasses.replace(CFG, in_dim=36, image_dim=24) if image else CFG
    return WanDiT(cfg).eval()


def _inputs(model: WanDiT, chunks: int, batch: int = 1, seed: int = 1):
    """Latents, per-frame timesteps and conditioning (with audio for every frame) of a sink + `chunks` chunks."""
    torch.manual_seed(seed)
    frames = SINK + chunks * CHUNK
    x = torch.randn(batch, 16, frames, HEIGHT, WIDTH)
    y = torch.randn(batch, 20, frames, HEIGHT, WIDTH) if model.cfg.has_image_branch else None
    t = torch.rand(batch, frames) * 1000
    clip = torch.randn(batch, 5, 24) if model.cfg.has_image_branch else None
    cond = model.prepare_conditioning(
        text=torch.randn(batch, 6, CFG.text_dim),
        clip_fea=clip,
        audio_first=torch.randn(batch, 1, AUDIO.window, AUDIO.encoder_layers, AUDIO.audio_dim),
        audio_rest=torch.randn(batch, frames - 1, AUDIO.window_vf, AUDIO.encoder_layers, AUDIO.audio_dim),
    )
    return x, y, t, cond


def _chunk_bounds(frames: int) -> list[tuple[int, int]]:
    return [(0, SINK)] + [(s, s + CHUNK) for s in range(SINK, frames, CHUNK)]


def _stream(model: WanDiT, x, y, t, cond: Conditioning, cache) -> tuple[torch.Tensor, torch.Tensor]:
    """Run every chunk twice (read-only, then writing the cache); both outputs concatenated over frames."""
    read_only, written = [], []
    for start, stop in _chunk_bounds(x.shape[2]):
        args = (x[:, :, start:stop], t[:, start:stop], cond.audio_frames(start, stop), cache, start)
        chunk_y = None if y is None else y[:, :, start:stop]
        read_only.append(model.forward_chunk(*args, y=chunk_y, write_cache=False))
        written.append(model.forward_chunk(*args, y=chunk_y, write_cache=True))
    return torch.cat(read_only, dim=2), torch.cat(written, dim=2)


@pytest.mark.parametrize(
    ("window", "chunks", "image", "batch"),
    [(None, 4, False, 2), (None, 3, True, 1), (6, 9, False, 1), (2, 5, False, 1)],
    ids=["unlimited", "unlimited-i2v", "window6-evicting", "window-shorter-than-chunk"],
)
def test_streaming_with_cache_equals_block_causal_forward(window, chunks, image, batch) -> None:
    model = _model(image)
    x, y, t, cond = _inputs(model, chunks, batch)
    frames = x.shape[2]
    with torch.no_grad():
        expected = model(x, t, cond, y=y, attention=BlockCausal(CHUNK, SINK, window))
        cache_window = frames - SINK if window is None else window
        cache = model.create_kv_cache(batch, TOKENS_PER_FRAME, SINK, cache_window, torch.float32, "cpu")
        read_only, written = _stream(model, x, y, t, cond, cache)
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
    model = _model()
    x, _, t, cond = _inputs(model, chunks=3)
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


def test_cache_memory_is_constant_over_a_long_stream() -> None:
    model = _model()
    window = 6
    x, _, t, cond = _inputs(model, chunks=1)
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, window, torch.float32, "cpu")
    buffers = cache.keys + cache.values
    pointers = [b.data_ptr() for b in buffers]
    shapes = [b.shape for b in buffers]
    allocated = cache.allocated_bytes
    assert allocated == 2 * CFG.num_layers * (SINK + window) * TOKENS_PER_FRAME * CFG.dim * 4
    chunk_cond = cond.audio_frames(SINK, SINK + CHUNK)
    with torch.no_grad():
        model.forward_chunk(x[:, :, :SINK], t[:, :SINK], cond.audio_frames(0, SINK), cache, 0, write_cache=True)
        for index in range(60):
            start = SINK + index * CHUNK
            model.forward_chunk(x[:, :, SINK:], t[:, SINK:], chunk_cond, cache, start, write_cache=True)
            assert cache.valid_frames == min(SINK + (index + 1) * CHUNK, SINK + window)
    assert [b.data_ptr() for b in cache.keys + cache.values] == pointers
    assert [b.shape for b in cache.keys + cache.values] == shapes
    assert cache.allocated_bytes == allocated
    last = SINK + 60 * CHUNK
    assert sorted(cache.slot_frames) == [0] + list(range(last - window, last))


def test_reset_reuses_memory_and_restarts_the_stream() -> None:
    model = _model()
    x, _, t, cond = _inputs(model, chunks=4)
    cache = model.create_kv_cache(1, TOKENS_PER_FRAME, SINK, 3, torch.float32, "cpu")
    pointers = [b.data_ptr() for b in cache.keys + cache.values]
    with torch.no_grad():
        first, _ = _stream(model, x, None, t, cond, cache)
        cache.reset()
        assert cache.valid_frames == 0
        second, _ = _stream(model, x, None, t, cond, cache)
    assert [b.data_ptr() for b in cache.keys + cache.values] == pointers
    assert torch.equal(first, second)


def test_bad_inputs_raise_clear_errors() -> None:
    model = _model()
    x, _, t, cond = _inputs(model, chunks=1)
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
    model = _model()
    x, _, t, _ = _inputs(model, chunks=1)
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
        streamed, _ = _stream(model, x, None, t, cond, cache)
    assert full.dtype == streamed.dtype == torch.bfloat16
    scale = expected.abs().max()
    assert (full.float() - expected).abs().max() < 0.05 * scale
    assert (streamed.float() - full.float()).abs().max() < 0.05 * scale


def test_cache_reads_only_visible_frames_in_any_slot_order() -> None:
    cache = _model().create_kv_cache(1, 2, sink_frames=1, window_frames=3, dtype=torch.float32, device="cpu")
    frame_values = {}
    for frame in range(6):  # frames 4 and 5 overwrite frames 1 and 2 in the ring
        keys = torch.full((1, 2, CFG.num_heads, CFG.head_dim), float(frame))
        frame_values[frame] = keys
        cache.write(0, frame, keys, -keys)
        cache.commit(frame, 1)
    assert cache.slot_frames == [0, 4, 5, 3]
    slots = cache.visible_slots(5)  # sink + frames [2, 5) that are still held: 3 and 4
    assert slots == [0, 1, 3]
    keys, values = cache.read(0, slots)
    expected = torch.cat([frame_values[0], frame_values[4], frame_values[3]], dim=1)
    assert torch.equal(keys, expected) and torch.equal(values, -expected)
    assert cache.visible_slots(0) == []

"""StreamingDecoder with a bounded temporal context: its definition, its limit cases, its flat cost, its config."""

from __future__ import annotations

import pytest
import torch
from tiny_vae import tiny_vae

from echotorrent_core.config import VAEConfig
from echotorrent_core.models.vae import StreamingDecoder, decode_as_stream


def _stream(decoder: StreamingDecoder, latents: torch.Tensor, split: list[int]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [decoder.decode_chunk(chunk) for chunk in latents.split(split, dim=2)]


@pytest.mark.parametrize(("split", "context"), [([4, 3, 3, 3], 2), ([1, 1, 1, 1, 1, 1], 1), ([2, 5, 3], 3)])
def test_each_chunk_is_a_fresh_decode_after_its_context(split: list[int], context: int) -> None:
    model = tiny_vae(0)
    latents = torch.randn(2, 4, sum(split), 2, 3)
    chunks = _stream(StreamingDecoder(model, context_latents=context), latents, split)
    start = 0
    with torch.no_grad():
        for index, (size, frames) in enumerate(zip(split, chunks)):
            first = max(0, start - context)
            expected = model.decode(latents[:, :, first : start + size])
            if index:
                expected = expected[:, :, -4 * size :]
            assert frames.shape == expected.shape
            assert (frames - expected).abs().max() < 1e-6
            start += size


def test_a_context_as_long_as_the_stream_is_the_full_causal_decode() -> None:
    model = tiny_vae(1)
    latents = torch.randn(1, 4, 9, 2, 2)
    with torch.no_grad():
        full = model.decode(latents)
    bounded = torch.cat(_stream(StreamingDecoder(model, context_latents=9), latents, [3, 2, 2, 2]), dim=2)
    assert (bounded - full).abs().max() < 1e-5


def test_a_short_context_differs_from_the_full_history_and_costs_the_same_per_chunk() -> None:
    model = tiny_vae(2)
    latents = torch.randn(1, 4, 13, 2, 2)
    decoder = StreamingDecoder(model, context_latents=2)
    seen: list[int] = []
    handle = model.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[2]))
    try:
        bounded = torch.cat(_stream(decoder, latents, [4, 3, 3, 3]), dim=2)
    finally:
        handle.remove()
    with torch.no_grad():
        full = model.decode(latents)
    assert bounded.shape == full.shape
    assert (bounded[:, :, :13] - full[:, :, :13]).abs().max() < 1e-6  # the first chunk has no history to cut
    assert (bounded[:, :, 13:] - full[:, :, 13:]).abs().max() > 1e-3
    assert max(seen) <= 2 + 3 and decoder._history.shape[2] == 2  # noqa: SLF001 - the bound itself


def test_the_vae_config_sets_the_default_and_reset_restarts() -> None:
    model = tiny_vae(3, decode_context_latents=2)
    decoder = StreamingDecoder(model)
    assert decoder.context_latents == 2
    assert StreamingDecoder(model, context_latents=0).context_latents == 0
    latents = torch.randn(1, 4, 7, 2, 2)
    first = _stream(decoder, latents, [4, 3])
    assert decoder.started
    decoder.reset()
    assert not decoder.started
    again = _stream(decoder, latents, [4, 3])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert VAEConfig.from_dict(model.cfg.to_dict()).decode_context_latents == 2
    with pytest.raises(ValueError, match="context_latents must be >= 0"):
        StreamingDecoder(model, context_latents=-1)


def test_decode_as_stream_is_the_full_decode_without_a_bound_and_follows_the_config_with_one() -> None:
    latents = torch.randn(1, 4, 8, 2, 2)
    plain, bounded = tiny_vae(4), tiny_vae(4, decode_context_latents=1)
    with torch.no_grad():
        assert (decode_as_stream(plain, latents) - plain.decode_raw(latents, clamp=False)).abs().max() < 1e-5
        chunks = [latents[:, :, :1]] + list(latents[:, :, 1:].split(3, dim=2))
        decoder = StreamingDecoder(bounded)
        streamed = torch.cat([decoder.decode_chunk_raw(c) for c in chunks], dim=2)
        assert torch.equal(decode_as_stream(bounded, latents), streamed)

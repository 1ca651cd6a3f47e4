"""Context-bounded encoding (`VAEConfig.encode_context_latents`): definition, limit cases, streaming equality."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_vae import tiny_vae

from echotorrent_core.config import VAEConfig
from echotorrent_core.models.vae import StreamingEncoder, WanVAE


def _unbounded(model: WanVAE) -> WanVAE:
    plain = WanVAE(dataclasses.replace(model.cfg, encode_context_latents=0)).eval()
    plain.load_state_dict(model.state_dict())
    return plain


@pytest.mark.parametrize("context", [1, 2])
def test_each_latent_is_the_last_of_its_own_window(context: int) -> None:
    model = tiny_vae(0, encode_context_latents=context)
    plain = _unbounded(model)
    video = torch.rand(2, 3, 1 + 4 * 7, 16, 16) * 2 - 1
    with torch.no_grad():
        bounded = model.encode_raw(video)
        full = plain.encode_raw(video)
        assert bounded.shape == full.shape == (2, 4, 8, 2, 2)
        assert (bounded[:, :, : context + 1] - full[:, :, : context + 1]).abs().max() < 1e-6
        for t in range(context + 1, 8):
            window = video[:, :, 4 * (t - context) : 4 * t + 1]
            expected = plain.encode_raw(window)[:, :, -1]
            assert (bounded[:, :, t] - expected).abs().max() < 1e-5
        assert (bounded[:, :, context + 1 :] - full[:, :, context + 1 :]).abs().max() > 1e-4


def test_a_bound_as_long_as_the_video_is_the_full_causal_encode() -> None:
    model = tiny_vae(1, encode_context_latents=6)
    video = torch.rand(1, 3, 1 + 4 * 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert (model.encode_raw(video) - _unbounded(model).encode_raw(video)).abs().max() < 1e-6


@pytest.mark.parametrize("split", [[1, 4, 8, 4, 12], [9, 20], [5, 4, 4, 4, 4, 4, 4], [29]])
def test_streaming_encoder_with_a_bound_equals_the_whole_encode(split: list[int]) -> None:
    model = tiny_vae(2, encode_context_latents=2)
    video = torch.rand(1, 3, sum(split), 16, 16) * 2 - 1
    encoder = StreamingEncoder(model)
    with torch.no_grad():
        whole = model.encode_raw(video)
        streamed = torch.cat([encoder.encode_chunk_raw(chunk) for chunk in video.split(split, dim=2)], dim=2)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() < 1e-5
    assert encoder.started
    encoder.reset()
    assert not encoder.started


def test_config_round_trip_and_validation() -> None:
    model = tiny_vae(3, encode_context_latents=2)
    assert VAEConfig.from_dict(model.cfg.to_dict()).encode_context_latents == 2
    with pytest.raises(ValueError, match="encode_context_latents"):
        WanVAE(dataclasses.replace(model.cfg, encode_context_latents=-1))
    encoder = StreamingEncoder(model)
    with torch.no_grad():
        encoder.encode_chunk_raw(torch.zeros(1, 3, 5, 16, 16))
        with pytest.raises(ValueError, match="4 \\* k"):
            encoder.encode_chunk_raw(torch.zeros(1, 3, 3, 16, 16))

"""Streaming VAE encoder and the i2v condition channels: chunk by chunk equals one encode of the whole clip."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.config import VAEConfig
from echotorrent_core.models.vae import StreamingEncoder, WanVAE
from echotorrent_core.streaming.image_condition import ImageCondition

TOLERANCE = 1e-5


def _tiny_vae(seed: int) -> WanVAE:
    torch.manual_seed(seed)
    cfg = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                    latents_mean=(0.1, -0.2, 0.3, 0.0), latents_std=(1.5, 0.5, 1.0, 2.0))
    return WanVAE(cfg).eval()


@pytest.mark.parametrize("split", [[1, 4, 4, 4], [5, 8], [1, 12], [13], [9, 4]])
def test_streaming_encode_equals_full_encode(split: list[int]) -> None:
    vae = _tiny_vae(1)
    video = torch.rand(2, 3, sum(split), 16, 24) * 2 - 1
    encoder = StreamingEncoder(vae)
    with torch.no_grad():
        full = vae.encode(video)
        chunks = [encoder.encode_chunk(chunk) for chunk in video.split(split, dim=2)]
    assert [c.shape[2] for c in chunks] == [(split[0] - 1) // 4 + 1] + [n // 4 for n in split[1:]]
    assert (torch.cat(chunks, dim=2) - full).abs().max() < TOLERANCE


def test_streaming_encoder_checks_chunk_lengths_and_keeps_its_grid() -> None:
    vae = _tiny_vae(2)
    encoder = StreamingEncoder(vae)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"1 \+ 4 \* k"):
            encoder.encode_chunk(torch.zeros(1, 3, 4, 16, 16))
        encoder.encode_chunk(torch.zeros(1, 3, 1, 16, 16))
        with pytest.raises(ValueError, match=r"4 \* k"):
            encoder.encode_chunk(torch.zeros(1, 3, 5, 16, 16))
        with pytest.raises(ValueError, match="frame size"):
            encoder.encode_chunk(torch.zeros(1, 3, 4, 16, 24))
        encoder.reset()
        assert not encoder.started
        encoder.encode_chunk(torch.zeros(1, 3, 1, 16, 24))


def _full_condition(vae: WanVAE, pixels: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """Wan's i2v `y` for a clip of `latent_frames` latents: mask (1 on frame 0) then encode([image, zeros...])."""
    clip = torch.cat([pixels, pixels.new_zeros(1, 3, 4 * (latent_frames - 1), *pixels.shape[3:])], dim=2)
    latents = vae.encode(clip)
    mask = torch.zeros(1, 4, latent_frames, *latents.shape[3:])
    mask[:, :, 0] = 1.0
    return torch.cat([mask, latents], dim=1)


def test_condition_channels_equal_the_full_encode_of_image_and_zero_frames() -> None:
    vae = _tiny_vae(3)
    pixels = torch.rand(1, 3, 1, 16, 32) * 2 - 1
    chunk, chunks = 3, 20  # 61 latent frames: far past the encoder's receptive field
    with torch.no_grad():
        full = _full_condition(vae, pixels, 1 + chunk * chunks)
        condition = ImageCondition(vae, pixels, torch.float32)
        streamed = [condition.sink] + [condition.for_frames(1 + i * chunk, chunk) for i in range(chunks)]
    streamed = torch.cat(streamed, dim=2)
    assert streamed.shape == full.shape == (1, 8, 61, 2, 4)
    assert (streamed - full).abs().max() < TOLERANCE
    # The receptive field is long: later frames are not the latent of two groups of zeros (the old "steady" one).
    latents = full[:, 4:]
    assert (latents[:, :, 4:] - latents[:, :, 2:3]).abs().amax() > 1e-2
    # ... and the encoder does reach a fixed point, detected exactly, after which it is not run again.
    assert condition.steady_from is not None and 3 < condition.steady_from < 61
    assert (latents[:, :, condition.steady_from :] - latents[:, :, -1:]).abs().amax() == 0


def test_condition_frames_come_in_stream_order_and_repeat_on_request() -> None:
    vae = _tiny_vae(4)
    pixels = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        condition = ImageCondition(vae, pixels, torch.float32)
        with pytest.raises(ValueError, match="stream order"):
            condition.for_frames(4, 3)
        first = condition.for_frames(1, 3)
        assert condition.for_frames(1, 3) is first
        with pytest.raises(ValueError, match="stream order"):
            condition.for_frames(1, 2)
        assert condition.for_frames(4, 2).shape == (1, 8, 2, 2, 2)


def test_encoder_cache_size_stays_fixed_over_a_long_stream() -> None:
    vae = _tiny_vae(5)
    encoder = StreamingEncoder(vae)
    shapes = []
    with torch.no_grad():
        encoder.encode_chunk(torch.rand(1, 3, 1, 16, 16))
        for _ in range(12):
            encoder.encode_chunk(torch.rand(1, 3, 8, 16, 16))
            shapes.append(encoder.cache.shapes())
    assert all(s == shapes[0] for s in shapes)
    assert max(shape[2] for shape in shapes[0]) == 2


def test_sampler_gives_each_chunk_the_condition_of_its_own_frames(monkeypatch) -> None:
    from echotorrent_core.config import get_preset
    from echotorrent_core.models.dit import WanDiT
    from echotorrent_core.streaming import StreamingSampler, StreamSettings
    from echotorrent_core.streaming.context import CachedContext

    preset = get_preset("tiny-i2v")
    torch.manual_seed(6)
    dit, vae = WanDiT(preset.dit).eval(), WanVAE(preset.vae).eval()
    committed: list[torch.Tensor] = []
    commit = CachedContext.commit

    def recording_commit(self, x0, cond, frame_start, y=None):
        committed.append(y)
        return commit(self, x0, cond, frame_start, y)

    monkeypatch.setattr(CachedContext, "commit", recording_commit)
    reference = torch.rand(3, 32, 32) * 2 - 1
    audio = preset.dit.audio
    features = torch.randn(40, audio.encoder_layers, audio.audio_dim)
    settings = StreamSettings(chunk_frames=2, window_frames=4, steps=1)
    chunks = list(StreamingSampler(dit, vae, settings).stream(reference, features, clip_fea=torch.randn(1, 257, 1280)))
    assert len(chunks) == 5 and len(committed) == 6  # the sink, then one commit per chunk
    with torch.no_grad():
        full = _full_condition(vae, reference[None, :, None], 11)
    assert (torch.cat(committed, dim=2) - full).abs().max() < TOLERANCE


def test_the_encoder_cache_is_freed_at_the_fixed_point() -> None:
    vae = _tiny_vae(8)
    pixels = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        condition = ImageCondition(vae, pixels, torch.float32)
        assert condition.cached_elements > 0
        while condition.steady_from is None:
            last = condition.for_frames(condition.next_frame, 3)
            assert condition.next_frame < 100, "no fixed point within 100 latent frames"
        assert condition.cached_elements == 0
        later = condition.for_frames(condition.next_frame, 3)
    assert torch.equal(later[:, :, -1], last[:, :, -1])

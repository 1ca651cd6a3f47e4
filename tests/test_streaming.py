"""Streaming sampler: cache equals recompute, reproducibility, frame counts, pass counts, interruption."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.config import get_preset
from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
from echotorrent_core.media.colour_map import IDENTITY_COLOUR_MAP, apply_colour_map, fit_colour_map
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.streaming import StreamingSampler, StreamSettings

from sampler_inputs import stream_inputs, tiny_models

TINY = get_preset("tiny")
AUDIO = TINY.dit.audio


@pytest.fixture(scope="module")
def models() -> tuple[WanDiT, WanVAE]:
    return tiny_models()


def _inputs(frames: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return stream_inputs(frames, seed)


def _video(sampler: StreamingSampler, frames: int, seed: int = 1) -> torch.Tensor:
    reference, features = _inputs(frames, seed)
    return torch.cat([chunk.frames for chunk in sampler.stream(reference, features)])


def test_cached_stream_equals_recomputing_the_prefix(models) -> None:
    dit, vae = models
    settings = StreamSettings(chunk_frames=2, window_frames=None, steps=2)
    cached = _video(StreamingSampler(dit, vae, settings, use_cache=True), frames=22)
    recomputed = _video(StreamingSampler(dit, vae, settings, use_cache=False), frames=22)
    assert cached.shape == recomputed.shape == (22, 32, 32, 3)
    assert (cached - recomputed).abs().max() < 1e-4


@pytest.mark.parametrize("layout", ["relative", "absolute"])
def test_cached_stream_equals_recomputing_with_a_rolling_window(models, layout: str) -> None:
    dit, vae = models
    settings = StreamSettings(chunk_frames=2, window_frames=2, steps=1, rope_layout=layout)
    reference, features = _inputs(40)  # 5 chunks: the window rolls from the third on
    cached = [c.latents for c in StreamingSampler(dit, vae, settings).stream(reference, features)]
    recomputed = [c.latents for c in StreamingSampler(dit, vae, settings, use_cache=False).stream(reference, features)]
    assert len(cached) == 5
    for a, b in zip(cached, recomputed, strict=True):
        assert (a - b).abs().max() < 1e-4
    if layout == "absolute":
        relative = StreamingSampler(dit, vae, StreamSettings(chunk_frames=2, window_frames=2, steps=1))
        other = [c.latents for c in relative.stream(reference, features)]
        assert torch.equal(other[0], cached[0])  # the window still reaches the sink: the layouts coincide
        assert (other[-1] - cached[-1]).abs().max() > 1e-4


def test_cached_latents_equal_recomputed_latents(models) -> None:
    dit, vae = models
    settings = StreamSettings(chunk_frames=3, window_frames=None, steps=3)
    reference, features = _inputs(30)
    cached = [c.latents for c in StreamingSampler(dit, vae, settings).stream(reference, features)]
    recomputed = [c.latents for c in StreamingSampler(dit, vae, settings, use_cache=False).stream(reference, features)]
    for a, b in zip(cached, recomputed, strict=True):
        assert (a - b).abs().max() < 1e-4


def test_same_seed_same_video_and_other_seed_other_video(models) -> None:
    dit, vae = models
    first = _video(StreamingSampler(dit, vae, StreamSettings(seed=7, steps=2)), frames=13)
    again = _video(StreamingSampler(dit, vae, StreamSettings(seed=7, steps=2)), frames=13)
    other = _video(StreamingSampler(dit, vae, StreamSettings(seed=8, steps=2)), frames=13)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


@pytest.mark.parametrize("frames", [1, 12, 13, 30])
def test_output_frame_count_follows_the_audio(models, frames: int) -> None:
    dit, vae = models
    sampler = StreamingSampler(dit, vae, StreamSettings(steps=1))
    reference, features = _inputs(frames)
    chunks = list(sampler.stream(reference, features))
    assert sum(c.frames.shape[0] for c in chunks) == frames
    assert len(chunks) == sampler.num_chunks(frames)
    assert [c.first_frame for c in chunks] == [12 * i for i in range(len(chunks))]
    assert all(0 <= float(c.frames.min()) and float(c.frames.max()) <= 1 for c in chunks)


@pytest.mark.parametrize(
    "mode, passes", [(GuidanceMode.SINGLE, 1), (GuidanceMode.AUDIO_CFG, 2), (GuidanceMode.TEXT_AUDIO_CFG, 3)]
)
def test_reported_passes_are_every_network_pass_the_chunk_ran(models, mode: GuidanceMode, passes: int) -> None:
    dit, vae = models
    calls = {"denoise": 0, "commit": 0}
    original = dit.forward_chunk

    def counting(*args, **kwargs):
        calls["commit" if kwargs.get("write_cache", False) else "denoise"] += 1
        return original(*args, **kwargs)

    dit.forward_chunk = counting
    try:
        sampler = StreamingSampler(dit, vae, StreamSettings(steps=3), GuidancePolicy(mode=mode))
        reference, features = _inputs(24)
        calls["commit"] = -1  # the sink is written once per stream, before the first chunk
        chunks = list(sampler.stream(reference, features))
    finally:
        del dit.forward_chunk
    assert [c.passes_per_step for c in chunks] == [passes] * len(chunks)
    assert [c.passes for c in chunks] == [passes * 3 + 1] * len(chunks)
    assert [c.commit_passes for c in chunks] == [1] * len(chunks)
    assert sum(c.passes for c in chunks) == calls["denoise"] + calls["commit"]
    assert chunks[0].passes_per_frame == (passes * 3 + 1) / 12
    recomputed = list(StreamingSampler(dit, vae, StreamSettings(steps=3), GuidancePolicy(mode=mode),
                                       use_cache=False).stream(reference, features))
    assert [(c.passes, c.commit_passes) for c in recomputed] == [(passes * 3, 0)] * len(chunks)


def test_interrupt_stops_the_stream_inside_a_chunk(models) -> None:
    dit, vae = models
    sampler = StreamingSampler(dit, vae, StreamSettings(steps=4))
    reference, features = _inputs(60)
    calls = {"n": 0}

    def interrupt_after_six_passes() -> None:
        calls["n"] += 1
        if calls["n"] > 6:
            raise InterruptedError("stop")

    received = []
    with pytest.raises(InterruptedError):
        for chunk in sampler.stream(reference, features, check_interrupt=interrupt_after_six_passes):
            received.append(chunk)
    assert len(received) == 1 and calls["n"] == 7


def test_rolling_window_keeps_cache_memory_constant(models) -> None:
    dit, vae = models
    from echotorrent_core.streaming.context import CachedContext

    settings = StreamSettings(chunk_frames=3, window_frames=6, steps=1)
    sizes = []
    original_commit = CachedContext.commit

    def recording_commit(self, x0, cond, frame_start, y=None):
        original_commit(self, x0, cond, frame_start, y)
        sizes.append((self.allocated_bytes, self.cache.valid_frames))

    CachedContext.commit = recording_commit
    try:
        reference, features = _inputs(12 * 8)
        list(StreamingSampler(dit, vae, settings).stream(reference, features))
    finally:
        CachedContext.commit = original_commit
    assert len({size for size, _ in sizes}) == 1
    assert max(valid for _, valid in sizes) == 1 + 6


@pytest.mark.parametrize(
    "reference, features, message",
    [
        (torch.zeros(3, 30, 32), torch.zeros(5, AUDIO.encoder_layers, AUDIO.audio_dim), "multiples of 16"),
        (torch.zeros(4, 32, 32), torch.zeros(5, AUDIO.encoder_layers, AUDIO.audio_dim), r"RGB image \[3, H, W\]"),
        (torch.zeros(3, 32, 32), torch.zeros(0, AUDIO.encoder_layers, AUDIO.audio_dim), "audio_features must be"),
        (torch.zeros(3, 32, 32), torch.zeros(5, 3, AUDIO.audio_dim), "audio_features must be"),
        (torch.zeros(3, 32, 32), torch.full((5, AUDIO.encoder_layers, AUDIO.audio_dim), float("nan")), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(models, reference, features, message) -> None:
    dit, vae = models
    with pytest.raises(ValueError, match=message):
        next(StreamingSampler(dit, vae).stream(reference, features))


def test_image_to_video_checkpoints_stream_with_condition_channels(models) -> None:
    from dataclasses import replace

    _, vae = models
    torch.manual_seed(3)
    dit = WanDiT(replace(TINY.dit, in_dim=36, image_dim=16)).eval()
    clip = torch.randn(1, 257, 16)
    settings = StreamSettings(chunk_frames=2, window_frames=None, steps=2)
    reference, features = _inputs(20)
    cached = [c.latents for c in StreamingSampler(dit, vae, settings).stream(reference, features, clip_fea=clip)]
    recomputed = [
        c.latents for c in StreamingSampler(dit, vae, settings, use_cache=False).stream(reference, features, clip_fea=clip)
    ]
    assert len(cached) == 3
    for a, b in zip(cached, recomputed, strict=True):
        assert (a - b).abs().max() < 1e-4
    with pytest.raises(ValueError, match="clip_fea"):
        next(StreamingSampler(dit, vae, settings).stream(reference, features))


def test_region_mask_reaches_the_audio_guidance(models) -> None:
    from echotorrent_core.guidance_schedule import PhasedSpatiotemporalSchedule

    dit, vae = models
    policy = GuidancePolicy(mode=GuidanceMode.AUDIO_CFG, audio_scale=6.0, schedule=PhasedSpatiotemporalSchedule())
    sampler = StreamingSampler(dit, vae, StreamSettings(steps=2), policy)
    reference, features = _inputs(12)
    mouth = torch.zeros(32, 32)
    mouth[20:28, 8:24] = 1.0
    with_mask = torch.cat([c.frames for c in sampler.stream(reference, features, region_mask=mouth)])
    again = torch.cat([c.frames for c in sampler.stream(reference, features, region_mask=mouth)])
    default = torch.cat([c.frames for c in sampler.stream(reference, features)])
    assert torch.equal(with_mask, again)
    assert (with_mask - default).abs().max() > 1e-4
    with pytest.raises(ValueError, match="acts only through the spatiotemporal schedule"):
        next(StreamingSampler(dit, vae, StreamSettings(steps=2)).stream(reference, features, region_mask=mouth))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        next(sampler.stream(reference, features, region_mask=torch.full((32, 32), 2.0)))


def test_colour_match_maps_every_frame_by_the_decoded_portraits_colour_map(models) -> None:
    dit, vae = models
    reference, features = _inputs(13)
    plain = _video(StreamingSampler(dit, vae, StreamSettings(steps=1, colour_match=False)), frames=13)
    matched = _video(StreamingSampler(dit, vae, StreamSettings(steps=1, colour_match=True)), frames=13)
    with torch.no_grad():
        pixels = reference[None, :, None].to(next(vae.parameters()).dtype)
        decoded = vae.decode(vae.encode(pixels)).clamp(-1, 1)
    colour_map = fit_colour_map(decoded[0, :, 0], pixels[0, :, 0])
    assert not torch.allclose(colour_map, IDENTITY_COLOUR_MAP, atol=1e-3)  # the random VAE shifts colours
    expected = apply_colour_map(plain.permute(3, 0, 1, 2) * 2 - 1, colour_map)
    assert torch.allclose(matched.permute(3, 0, 1, 2) * 2 - 1, expected, atol=1e-5)
    mapped_portrait = apply_colour_map(decoded[0], colour_map)[:, 0]
    assert (mapped_portrait - pixels[0, :, 0]).square().mean() < (decoded[0, :, 0] - pixels[0, :, 0]).square().mean()

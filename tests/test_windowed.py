"""The windowed bidirectional baseline: window layout, audio alignment, pass counts."""

from __future__ import annotations

import torch

from echotorrent_core.config import get_preset
from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
from echotorrent_core.media.colour_map import IDENTITY_COLOUR_MAP, apply_colour_map, fit_colour_map
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.windowed import WindowedBidirectionalSampler, WindowSettings

TINY = get_preset("tiny")


def test_windows_cover_the_audio_with_motion_frame_overlap() -> None:
    torch.manual_seed(0)
    dit, vae = WanDiT(TINY.dit).eval(), WanVAE(TINY.vae).eval()
    settings = WindowSettings(window_frames=13, motion_frames=5, steps=2)
    sampler = WindowedBidirectionalSampler(dit, vae, settings, GuidancePolicy(mode=GuidanceMode.TEXT_AUDIO_CFG))
    audio = TINY.dit.audio
    features = torch.randn(30, audio.encoder_layers, audio.audio_dim)
    windows = list(sampler.stream(torch.zeros(3, 32, 32), features))
    # first window: 12 new frames after the portrait; then 13 - 5 = 8 new frames per window
    assert [w.frames.shape[0] for w in windows] == [12, 8, 8, 2]
    assert all(w.passes == 3 * 2 for w in windows)
    assert windows[0].frames.shape[1:] == (32, 32, 3)


def test_later_windows_open_on_the_reencoded_last_frames() -> None:
    torch.manual_seed(0)
    dit, vae = WanDiT(TINY.dit).eval(), WanVAE(TINY.vae).eval()
    inputs = []
    dit.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    settings = WindowSettings(window_frames=13, motion_frames=5, steps=2)
    sampler = WindowedBidirectionalSampler(dit, vae, settings, GuidancePolicy(mode=GuidanceMode.AUDIO_CFG))
    audio = TINY.dit.audio
    features = torch.randn(20, audio.encoder_layers, audio.audio_dim)
    windows = list(sampler.stream(torch.zeros(3, 32, 32), features))
    assert len(windows) == 2 and windows[0].passes == 4
    last_frames = windows[0].frames[-5:].permute(3, 0, 1, 2)[None] * 2 - 1  # [1, 3, 5, H, W] in [-1, 1]
    with torch.no_grad():
        expected = vae.encode(last_frames)
    assert expected.shape[2] == 2
    assert torch.allclose(inputs[4][:, :, :2], expected, atol=1e-4)


def test_colour_match_maps_the_windows_by_one_affine_colour_map() -> None:
    torch.manual_seed(0)
    dit, vae = WanDiT(TINY.dit).eval(), WanVAE(TINY.vae).eval()
    audio = TINY.dit.audio
    features = torch.randn(12, audio.encoder_layers, audio.audio_dim)
    reference = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    first = {}
    for match in (False, True):
        settings = WindowSettings(window_frames=13, motion_frames=5, steps=2, colour_match=match)
        sampler = WindowedBidirectionalSampler(dit, vae, settings, GuidancePolicy(mode=GuidanceMode.AUDIO_CFG))
        first[match] = next(iter(sampler.stream(reference, features))).frames.permute(3, 0, 1, 2) * 2 - 1
    plain, matched = first[False], first[True]
    colour_map = fit_colour_map(plain.flatten(1, 2), matched.flatten(1, 2), ridge=0.0)
    assert not torch.allclose(colour_map, IDENTITY_COLOUR_MAP, atol=1e-2)
    inside = (matched.abs() < 0.999).all(dim=0)  # pixels the map's clamp did not touch
    assert (apply_colour_map(plain, colour_map) - matched).abs().amax(dim=0)[inside].max() < 1e-3

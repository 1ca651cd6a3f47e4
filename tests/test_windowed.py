"""The windowed bidirectional baseline: window layout, audio alignment, pass counts."""

from __future__ import annotations

import torch

from echotorrent_core.config import get_preset
from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
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

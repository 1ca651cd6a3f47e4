"""Detail / stability metrics and the Frechet distance against closed forms and deliberately broken videos."""

import numpy as np
import pytest
import torch

from echotorrent_core.metrics.corruptions import blur, colour_drift, shift_audio
from echotorrent_core.metrics.frechet import frechet_distance
from echotorrent_core.metrics.image_quality import (
    colour_drift as colour_drift_metric, detail_ratios, psnr, ssim, temporal_flicker,
)


def _textured_video(frames: int = 6, size: int = 48) -> np.ndarray:
    generator = np.random.default_rng(0)
    base = generator.integers(0, 256, (size, size, 3)).astype(np.float32)
    shifts = [np.roll(base, t, axis=1) for t in range(frames)]
    return np.stack(shifts).astype(np.uint8)


def _unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def test_psnr_matches_mse_formula_and_ssim_is_one_on_identity():
    truth = _unit(_textured_video())
    noisy = (truth + 0.2 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    expected = float(torch.stack([10 * torch.log10(1 / ((n - g) ** 2).mean()) for n, g in zip(noisy, truth)]).mean())
    assert psnr(noisy, truth) == pytest.approx(expected, rel=1e-4)
    assert ssim(truth, truth) == pytest.approx(1.0, abs=1e-4)
    assert ssim(noisy, truth) < 0.9


def test_blur_lowers_detail_ratios_and_psnr():
    frames = _textured_video()
    truth = _unit(frames)
    blurred = _unit(blur(frames, 2.0))
    ratios = detail_ratios(blurred, truth)
    assert ratios["laplacian_ratio"] < 0.2 and ratios["high_band_ratio"] < 0.2
    same = detail_ratios(truth, truth)
    assert same["laplacian_ratio"] == pytest.approx(1.0) and same["high_band_ratio"] == pytest.approx(1.0)
    assert psnr(blurred, truth) < 20


def test_flicker_and_colour_drift_separate_broken_from_good():
    frames = np.repeat(_textured_video(1), 8, axis=0)
    good = _unit(frames)
    assert temporal_flicker(good) == pytest.approx(0.0, abs=1e-7)
    flicker = good * torch.tensor([1.0, 0.8] * 4)[:, None, None, None]
    assert temporal_flicker(flicker) > 0.05
    drifted = _unit(colour_drift(frames, 0.3))
    assert colour_drift_metric(good, good[0]) == pytest.approx(0.0, abs=1e-6)
    assert colour_drift_metric(drifted, good[0]) > 0.1


def test_frechet_distance_of_gaussians_matches_closed_form():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=generator, dtype=torch.float64) * 2.0 + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # identity vs 4 I covariances, mean gap 1: 1 + 3 * (1 + 4 - 2 * 2) = 4
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_shift_audio_delays_and_advances_keeping_length():
    audio = torch.arange(1, 101, dtype=torch.float32)[None]
    delayed = shift_audio(audio, rate=100, frames=2, fps=10)
    assert delayed.shape == audio.shape and delayed[0, :20].abs().sum() == 0 and delayed[0, 20] == 1
    advanced = shift_audio(audio, rate=100, frames=-2, fps=10)
    assert advanced[0, 0] == 21 and advanced[0, -20:].abs().sum() == 0

"""Detail and stability of a video: PSNR (per frame, capped at 100 dB) / SSIM (kornia) against ground truth,
high-frequency energy relative to ground truth (Laplacian and FFT band), temporal flicker and colour drift.

Videos are `[T, 3, H, W]` float in [0, 1]. Detail ratios are < 1 for a blurrier video than the ground truth and
> 1 for added noise; flicker and colour drift need no ground truth. Everything is batched torch (GPU-ready).
"""

from __future__ import annotations

import kornia
import torch

MAX_PSNR = 100.0  # dB given to a frame identical to its ground truth
HIGH_BAND = 0.25  # cycles per pixel: the FFT band above a quarter of the sampling rate counts as detail
FLICKER_BLUR_SIGMA = 2.0  # flicker is measured on blurred frames so that fine motion is not counted


def _check_video(video: torch.Tensor, name: str = "video") -> None:
    if video.ndim != 4 or video.shape[1] != 3 or not video.is_floating_point():
        raise ValueError(f"expected {name} as float [T, 3, H, W] in [0, 1], got {tuple(video.shape)} {video.dtype}")


def _check_pair(video: torch.Tensor, truth: torch.Tensor) -> None:
    _check_video(video)
    _check_video(truth, "ground truth")
    if video.shape != truth.shape:
        raise ValueError(f"video {tuple(video.shape)} and ground truth {tuple(truth.shape)} must have the same shape")


def psnr(video: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) against ground truth; an identical frame counts as `MAX_PSNR` dB (not infinity)."""
    _check_pair(video, truth)
    mse = (video - truth).pow(2).mean(dim=(1, 2, 3)).clamp_min(10 ** (-MAX_PSNR / 10))
    return float((-10 * torch.log10(mse)).mean())


def ssim(video: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean SSIM (11 px Gaussian window) against ground truth."""
    _check_pair(video, truth)
    return float(kornia.metrics.ssim(video, truth, window_size=11).mean())


def _gray(video: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_grayscale(video)


def laplacian_energy(video: torch.Tensor) -> float:
    """Mean squared Laplacian response of the luminance (fine-detail energy)."""
    _check_video(video)
    return float(kornia.filters.laplacian(_gray(video), kernel_size=3).pow(2).mean())


def high_band_energy(video: torch.Tensor) -> float:
    """Mean spectral power of the luminance above `HIGH_BAND` cycles/pixel (radial frequency)."""
    _check_video(video)
    gray = _gray(video)[:, 0]
    power = torch.fft.fft2(gray - gray.mean(dim=(-2, -1), keepdim=True)).abs().pow(2)
    fy = torch.fft.fftfreq(gray.shape[-2])[:, None]
    fx = torch.fft.fftfreq(gray.shape[-1])[None, :]
    band = (fy ** 2 + fx ** 2).sqrt() >= HIGH_BAND
    return float(power[:, band].mean())


def detail_ratios(video: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """High-frequency energy of the video over that of ground truth: Laplacian and FFT high band."""
    _check_pair(video, truth)
    return {"laplacian_ratio": laplacian_energy(video) / max(laplacian_energy(truth), 1e-12),
            "high_band_ratio": high_band_energy(video) / max(high_band_energy(truth), 1e-12)}


def temporal_flicker(video: torch.Tensor) -> float:
    """Mean absolute change of the blurred luminance between consecutive frames (0 for a still video)."""
    _check_video(video)
    if video.shape[0] < 2:
        raise ValueError("temporal flicker needs at least 2 frames")
    smooth = kornia.filters.gaussian_blur2d(_gray(video), (9, 9), (FLICKER_BLUR_SIGMA, FLICKER_BLUR_SIGMA))
    return float((smooth[1:] - smooth[:-1]).abs().mean())


def colour_drift(video: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest distance over frames between a frame's mean RGB and the reference image's `[3, H, W]` mean RGB."""
    _check_video(video)
    if reference.ndim != 3 or reference.shape[0] != 3:
        raise ValueError(f"expected the reference as [3, H, W], got {tuple(reference.shape)}")
    return float((video.mean(dim=(2, 3)) - reference.mean(dim=(1, 2))[None]).norm(dim=1).max())

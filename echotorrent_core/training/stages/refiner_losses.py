"""Pixel losses of the refiner stage: L1 + SSIM + Laplacian (losses/reconstruction.py) + an FFT high-band term,
and an optional small patch discriminator with hinge losses.

The FFT term compares the magnitude spectra of the luminance above `HIGH_BAND` cycles per pixel. A magnitude
spectrum does not change when the picture shifts, so this term asks for the right amount and orientation of fine
detail even where the decoded latents are not pixel-aligned with the real frames (student motion), where L1 and
SSIM can only ask for blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..losses.reconstruction import high_frequency_l1, ssim_dissimilarity

HIGH_BAND = 0.25  # cycles per pixel, the band metrics/image_quality.py counts as detail
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class DetailWeights:
    """Weights of `detail_loss` (0 disables a term)."""

    l1: float = 1.0
    ssim: float = 0.2
    laplacian: float = 0.5
    fft_band: float = 0.1
    ssim_window: int = 7


def _luma(video: torch.Tensor) -> torch.Tensor:
    """`[B, 3, T, H, W]` -> `[B, T, H, W]`."""
    weights = torch.tensor(LUMA, device=video.device, dtype=video.dtype).view(1, 3, 1, 1, 1)
    return (video * weights).sum(dim=1)


def fft_band_l1(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the FFT magnitudes of the luminance at radial frequencies >= HIGH_BAND cycles/pixel."""
    height, width = decoded.shape[-2:]
    fy = torch.fft.fftfreq(height, device=decoded.device)[:, None]
    fx = torch.fft.fftfreq(width, device=decoded.device)[None, :]
    band = (fy.square() + fx.square()).sqrt() >= HIGH_BAND
    magnitude = lambda video: torch.fft.fft2(_luma(video.float()), norm="ortho").abs()[..., band]
    return (magnitude(decoded) - magnitude(target)).abs().mean()


def detail_loss(decoded: torch.Tensor, target: torch.Tensor, weights: DetailWeights) -> tuple[torch.Tensor, dict]:
    """Weighted L1 + SSIM + Laplacian + FFT band of decoded `[B, 3, T, H, W]` (unclamped) against target in [-1, 1].

    Returns `(loss, {term: unweighted value})`.
    """
    if decoded.shape != target.shape:
        raise ValueError(f"decoded {tuple(decoded.shape)} and target {tuple(target.shape)} must have one shape")
    terms = {"l1": (decoded - target).abs().mean()}
    if weights.ssim:
        terms["ssim"] = ssim_dissimilarity(decoded, target, weights.ssim_window)
    if weights.laplacian:
        terms["laplacian"] = high_frequency_l1(decoded, target)
    if weights.fft_band:
        terms["fft_band"] = fft_band_l1(decoded, target)
    loss = sum(getattr(weights, name) * value for name, value in terms.items())
    return loss, {name: float(value.detach()) for name, value in terms.items()}


class PatchDiscriminator(nn.Module):
    """Frames `[N, 3, H, W]` in [-1, 1] -> realness logits `[N, 1, H/4, W/4]` (three convolutions, PatchGAN-style)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames)


def video_frames(video: torch.Tensor) -> torch.Tensor:
    """`[B, 3, T, H, W]` -> `[B * T, 3, H, W]`."""
    return video.transpose(1, 2).flatten(0, 1)


def hinge_critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator on videos `[B, 3, T, H, W]`: relu(1 - D(real)) + relu(1 + D(fake))."""
    return (torch.relu(1 - critic(video_frames(real))).mean() + torch.relu(1 + critic(video_frames(fake))).mean())


def hinge_generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge loss: -D(fake) on videos `[B, 3, T, H, W]`, with the discriminator's weights
    detached (gradients reach the decoder only; the critic is read, never trained, in the generator update)."""
    weights = {name: value.detach() for name, value in critic.named_parameters()}
    return -functional_call(critic, weights, (video_frames(fake),)).mean()

"""Pixel reconstruction losses of the VAE stages: L1, SSIM (kornia), a Laplacian high-frequency term, and KL.

No perceptual network exists offline here, so detail is kept by SSIM (local structure) and by matching the
Laplacian band of the frames, which an L1 / L2 loss alone lets the decoder blur away. `motion_l1` is an L1 weighted
by each pixel's motion over the window (`motion_weights.relative_motion`, mean 1): the mouth moves and fills a few
hundred of a frame's 16384 pixels at 128 px, so a plain L1 lets the decoder average it away over its 4-frame latents.
`map_l1` weighs L1 and Laplacian errors by a fixed pixel map (`pixel_map`, e.g. the mouth map of the latent grid
upsampled), so the decoder's errors where the speech shows weigh more (measured on the default model, 500
decoder-only steps: held-out map-weighted L1 -19%, but the face mesh reads the mouth no better; runs/default_model/).
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch

from .motion_weights import relative_motion


@dataclass(frozen=True)
class ReconstructionWeights:
    """Weights of the terms of `reconstruction_loss` (0 disables a term)."""

    l1: float = 1.0
    ssim: float = 0.2
    high_frequency: float = 0.5
    kl: float = 1e-6
    ssim_window: int = 7
    motion_l1: float = 0.0
    map_l1: float = 0.0


def _frames(video: torch.Tensor) -> torch.Tensor:
    """`[B, 3, T, H, W]` -> `[B * T, 3, H, W]`."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"expected a video [B, 3, T, H, W], got {tuple(video.shape)}")
    return video.transpose(1, 2).flatten(0, 1)


def laplacian_error(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel `|laplacian(decoded) - laplacian(target)|` `[B * T, 3, H, W]` (3x3) of two videos `[B, 3, T, H, W]`."""
    return (kornia.filters.laplacian(_frames(decoded), 3) - kornia.filters.laplacian(_frames(target), 3)).abs()


def high_frequency_l1(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the 3x3 Laplacians of two videos `[B, 3, T, H, W]` (edges, texture)."""
    return laplacian_error(decoded, target).mean()


def ssim_dissimilarity(decoded: torch.Tensor, target: torch.Tensor, window: int) -> torch.Tensor:
    """kornia's `(1 - SSIM) / 2` between two videos `[B, 3, T, H, W]` in [-1, 1] (dynamic range 2)."""
    return kornia.losses.ssim_loss(_frames(decoded), _frames(target), window, max_val=2.0)


def motion_weighted_l1(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 of two videos `[B, 3, T, H, W]` weighted per pixel by the target's relative motion over frames 1.. (0 on a
    still window)."""
    weights = relative_motion(target)[:, None, None]
    return (weights * (decoded - target).abs()).mean()


def pixel_map_weights(cell_map: torch.Tensor, size: int) -> torch.Tensor:
    """A latent-grid map `[h, w]` (values >= 0) -> pixel weights `[size, size]` with mean 1 (each cell's value spread
    over its pixels, nearest neighbour); uniform for an all-zero map (no cell marked), as `cell_map` does."""
    if cell_map.ndim != 2 or size % cell_map.shape[0] or size % cell_map.shape[1]:
        raise ValueError(f"expected an [h, w] map whose sides divide the frame size {size}, got "
                         f"{tuple(cell_map.shape)}")
    if float(cell_map.sum()) <= 0:
        return torch.ones(size, size)
    pixels = torch.nn.functional.interpolate(cell_map.float()[None, None], size=(size, size), mode="nearest")[0, 0]
    return pixels / pixels.mean()


def map_weighted_l1(decoded: torch.Tensor, target: torch.Tensor, pixel_map: torch.Tensor) -> torch.Tensor:
    """L1 of the frames plus L1 of their Laplacians, weighted per pixel by `pixel_map` `[H, W]` (mean 1), for two
    videos `[B, 3, T, H, W]`."""
    errors = (_frames(decoded) - _frames(target)).abs() + laplacian_error(decoded, target)
    return (pixel_map.to(decoded) * errors).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean KL of `N(mu, exp(logvar))` from `N(0, 1)` per latent element."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()


def reconstruction_loss(
    decoded: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    weights: ReconstructionWeights = ReconstructionWeights(),
    pixel_map: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted L1 + SSIM + Laplacian + KL (+ motion-weighted L1, + the `pixel_map` `[H, W]` weighted L1 when
    `weights.map_l1` is set).

    decoded / target `[B, 3, T, H, W]` (decoded unclamped, target in [-1, 1]); mu / logvar the posterior
    `[B, z, F, h, w]`. Returns `(loss, logs)` with every term's unweighted value and the PSNR of the clamped frames.
    """
    if decoded.shape != target.shape:
        raise ValueError(f"decoded and target must have one shape, got {tuple(decoded.shape)}, {tuple(target.shape)}")
    terms = {"l1": (decoded - target).abs().mean(), "kl": gaussian_kl(mu.float(), logvar.float())}
    if weights.ssim:
        terms["ssim"] = ssim_dissimilarity(decoded, target, weights.ssim_window)
    if weights.high_frequency:
        terms["high_frequency"] = high_frequency_l1(decoded, target)
    if weights.motion_l1:
        terms["motion_l1"] = motion_weighted_l1(decoded, target)
    if weights.map_l1:
        if pixel_map is None or tuple(pixel_map.shape) != tuple(decoded.shape[-2:]):
            raise ValueError(f"map_l1 needs a pixel_map of the frame size {tuple(decoded.shape[-2:])}, got "
                             f"{None if pixel_map is None else tuple(pixel_map.shape)}")
        terms["map_l1"] = map_weighted_l1(decoded, target, pixel_map)
    loss = sum(getattr(weights, name) * value for name, value in terms.items())
    with torch.no_grad():
        mse = (decoded.clamp(-1, 1) - target).square().mean()
        psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
    logs = {name: float(value.detach()) for name, value in terms.items()} | {"psnr": float(psnr)}
    return loss, logs

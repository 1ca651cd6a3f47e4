"""Distribution Matching Distillation (DMD / DMD2) with the decoupled audio-CFG gradient and ACC's calibration.

All tensors are `[B, C, F, h, w]` clean-latent (x0) predictions at the same re-noised student output `x_t`.
Guidance is linear in the prediction and `x0 = x_t - s v` is affine with the same `x_t`, so CFG on velocities
equals CFG on x0: `x0_cfg = x0_u + a (x0_c - x0_u)` (c = with audio, u = zero audio features, as guidance's null).

- DMD gradient (Yin et al.): `grad = x0_fake - x0_real`, divided per sample by `mean |x - x0_real|`;
  loss `0.5 * mean (x - stopgrad(x - grad))^2`, whose gradient w.r.t. x is `grad / numel`: descending it moves
  the student's sample towards the real (teacher) score and away from the fake (critic) one.
- Decoupled CFG: with `x0_real = x0_cfg`, `grad = (x0_fake - x0_c) - (a - 1)(x0_c - x0_u)`: a distribution-matching
  term plus a CFG-augmentation term.
- ACC (Adaptive CFG Calibration): the EchoTorrent abstract names it without a formula; our design (public pieces)
  multiplies the CFG-augmentation term by the phased spatiotemporal weight `m` of
  `guidance_schedule.PhasedSpatiotemporalSchedule` (the same object inference guidance uses), so the real score
  is `x0_c + (a - 1) m (x0_c - x0_u)`: `m = 1` is the plain CFG teacher, `m = 0` the conditional teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DecoupledGradient:
    """The two terms of the (unnormalised) DMD gradient, `[B, C, F, h, w]` each; `real` = the calibrated real x0."""

    matching: torch.Tensor  # x0_fake - x0_c
    augmentation: torch.Tensor  # -(a - 1) m (x0_c - x0_u)
    real: torch.Tensor  # x0_c + (a - 1) m (x0_c - x0_u)

    @property
    def total(self) -> torch.Tensor:
        return self.matching + self.augmentation


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"DMD tensors must share one shape [B, C, F, h, w], got {shapes}")


def decoupled_cfg_gradient(
    x0_fake: torch.Tensor,
    x0_cond: torch.Tensor,
    x0_uncond: torch.Tensor,
    audio_scale: float,
    weight: torch.Tensor | float = 1.0,
) -> DecoupledGradient:
    """Split `x0_fake - x0_real` into its matching and (scheduled) audio CFG-augmentation terms.

    x0_* `[B, C, F, h, w]`; audio_scale `a` (CFG scale); weight `m`: a float or a map broadcastable to the x0s
    (`PhasedSpatiotemporalSchedule.weight_map`, `[B, 1, F, h, w]`)."""
    _check_shapes(x0_fake=x0_fake, x0_cond=x0_cond, x0_uncond=x0_uncond)
    excess = (audio_scale - 1.0) * weight * (x0_cond.float() - x0_uncond.float())
    return DecoupledGradient(matching=x0_fake.float() - x0_cond.float(), augmentation=-excess,
                             real=x0_cond.float() + excess)


def normalised_dmd_gradient(x: torch.Tensor, grad: torch.Tensor, x0_real: torch.Tensor,
                            eps: float = 1e-6) -> torch.Tensor:
    """`grad / mean |x - x0_real|` per sample (over C, F, h, w); x, grad, x0_real `[B, C, F, h, w]`; no autograd."""
    _check_shapes(x=x, grad=grad, x0_real=x0_real)
    with torch.no_grad():
        scale = (x.detach().float() - x0_real.float()).abs().mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        return grad.float() / scale.clamp_min(eps)


def dmd_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """`0.5 * mean (x - stopgrad(x - grad))^2`: a scalar whose gradient w.r.t. x `[B, C, F, h, w]` is
    `grad / x.numel()`."""
    _check_shapes(x=x, grad=grad)
    target = (x.detach().float() - grad.detach().float())
    return 0.5 * (x.float() - target).square().mean()

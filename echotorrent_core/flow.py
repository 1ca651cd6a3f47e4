"""Wan2.1 flow matching: sigmas, the timestep shift, timestep lists, and x0 / velocity / noise conversions.

A sigma `s` in [0, 1] is the noise level (`x_t = (1 - s) x0 + s eps`) and the Wan timestep is `t = 1000 s`.
The network predicts the velocity `v = eps - x0`, so `x0 = x_t - s v`. Latents are `[B, C, F, H, W]`; timesteps
given to the conversions are a number, `[B]` (one per sample) or `[B, F]` (one per latent frame), and a leading
dimension of 1 broadcasts over the batch. Conversions compute in float32 and return the latents' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NUM_TRAIN_TIMESTEPS = 1000
# Wan's flow UniPC scheduler starts its inference sigmas at the largest training sigma, 1 - 1/1000.
WAN_SIGMA_MAX = 1.0 - 1.0 / NUM_TRAIN_TIMESTEPS

TimestepLike = torch.Tensor | float | int


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Wan's resolution shift `s' = k s / (1 + (k - 1) s)` (k = `shift` > 0); keeps 0 and 1 fixed, any shape."""
    if shift <= 0:
        raise ValueError(f"expected a positive shift, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def few_step_timesteps(base: Sequence[float] = (1000, 750, 500, 250), shift: float = 5.0) -> torch.Tensor:
    """Timesteps of a few-step student: the `base` timesteps mapped through the shift, `[steps]` float32.

    This is Self-Forcing's "warped" denoising list: with shift 5, (1000, 750, 500, 250) becomes
    (1000, 937.5, 833.3, 625). `base` must be strictly decreasing within (0, 1000].
    """
    values = [float(b) for b in base]
    if not values:
        raise ValueError("expected at least one base timestep")
    if any(not 0 < b <= NUM_TRAIN_TIMESTEPS for b in values):
        raise ValueError(f"expected base timesteps in (0, {NUM_TRAIN_TIMESTEPS}], got {values}")
    if any(later >= earlier for earlier, later in zip(values, values[1:])):
        raise ValueError(f"expected strictly decreasing base timesteps, got {values}")
    sigmas = torch.tensor(values, dtype=torch.float64) / NUM_TRAIN_TIMESTEPS
    return (shift_sigma(sigmas, shift) * NUM_TRAIN_TIMESTEPS).float()


def few_step_timesteps_for(steps: int, shift: float = 5.0) -> torch.Tensor:
    """Few-step timesteps for any step count: base `1000 * (1 - i / steps)`, shifted; `[steps]` float32.

    2 steps -> base (1000, 500); 4 steps -> base (1000, 750, 500, 250).
    """
    if steps < 1:
        raise ValueError(f"expected at least one denoising step, got {steps}")
    base = [NUM_TRAIN_TIMESTEPS * (1 - i / steps) for i in range(steps)]
    return few_step_timesteps(base, shift)


def many_step_sigmas(steps: int, shift: float = 5.0) -> torch.Tensor:
    """Sigmas of Wan's many-step sampler: `[steps + 1]` float32, the last one 0.

    Follows Wan2.1's default `FlowUniPCMultistepScheduler.set_timesteps`: `linspace(1 - 1/1000, 0, steps + 1)`
    without its last entry, shifted, then a final sigma of 0 appended (`final_sigmas_type="zero"`).
    """
    if steps < 1:
        raise ValueError(f"expected at least one sampling step, got {steps}")
    sigmas = torch.linspace(WAN_SIGMA_MAX, 0.0, steps + 1, dtype=torch.float64)[:-1]
    shifted = shift_sigma(sigmas, shift)
    return torch.cat([shifted, shifted.new_zeros(1)]).float()


def many_step_timesteps(steps: int, shift: float = 5.0) -> torch.Tensor:
    """Timesteps of Wan's many-step sampler, `1000 * many_step_sigmas(...)[:-1]`: `[steps]` float32.

    Wan truncates these to integers for the network while its solver uses the float sigmas; they are kept as
    floats here so the network sees exactly the sigma the Euler update uses (the difference is under 1).
    """
    return many_step_sigmas(steps, shift)[:-1] * NUM_TRAIN_TIMESTEPS


def sigma_grid(t: TimestepLike, like: torch.Tensor) -> torch.Tensor:
    """Sigma `t / 1000` shaped to broadcast onto `like` `[B, C, F, H, W]`: float32 `[B|1, 1, F|1, 1, 1]`.

    `t`: a number, a 0-d tensor, `[B]`/`[1]` (per sample) or `[B, F]`/`[1, F]`/`[B, 1]` (per latent frame).
    """
    if like.ndim != 5:
        raise ValueError(f"expected latents of shape [B, C, F, H, W], got {tuple(like.shape)}")
    batch, _, frames = like.shape[:3]
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    if t.ndim == 0:
        grid = t.reshape(1, 1, 1, 1, 1)
    elif t.ndim == 1 and t.shape[0] in (1, batch):
        grid = t.reshape(-1, 1, 1, 1, 1)
    elif t.ndim == 2 and t.shape[0] in (1, batch) and t.shape[1] in (1, frames):
        grid = t.reshape(t.shape[0], 1, t.shape[1], 1, 1)
    else:
        raise ValueError(
            f"expected timesteps of shape [], [{batch}] or [{batch}, {frames}] for latents "
            f"{tuple(like.shape)}, got {tuple(t.shape)}"
        )
    return grid / NUM_TRAIN_TIMESTEPS


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"expected {a_name} and {b_name} of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: TimestepLike) -> torch.Tensor:
    """Forward process `x_t = (1 - s) x0 + s eps`; `x0`, `noise` `[B, C, F, H, W]` -> `[B, C, F, H, W]`."""
    _check_same_shape(x0, noise, "x0", "noise")
    sigma = sigma_grid(t, x0)
    return ((1 - sigma) * x0.float() + sigma * noise.float()).to(x0.dtype)


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t: TimestepLike) -> torch.Tensor:
    """Clean latents `x0 = x_t - s v` from a velocity prediction; `[B, C, F, H, W]` each."""
    _check_same_shape(x_t, v, "x_t", "velocity")
    return (x_t.float() - sigma_grid(t, x_t) * v.float()).to(x_t.dtype)


def velocity_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: TimestepLike) -> torch.Tensor:
    """Velocity `v = (x_t - x0) / s` implied by an x0 prediction; `[B, C, F, H, W]` each; every `t` must be > 0."""
    _check_same_shape(x_t, x0, "x_t", "x0")
    sigma = sigma_grid(t, x_t)
    if bool((sigma <= 0).any()):
        raise ValueError("velocity_from_x0 needs timesteps > 0: at t = 0 the velocity is not determined by x0")
    return ((x_t.float() - x0.float()) / sigma).to(x_t.dtype)


def noise_from_x0_velocity(x0: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Noise `eps = x0 + v` of the straight path through `x0` with velocity `v`; `[B, C, F, H, W]` each."""
    _check_same_shape(x0, v, "x0", "velocity")
    return (x0.float() + v.float()).to(x0.dtype)


def euler_step(x_t: torch.Tensor, v: torch.Tensor, t: TimestepLike, t_next: TimestepLike) -> torch.Tensor:
    """One Euler step of the flow ODE `x_next = x_t + (s_next - s) v`; `[B, C, F, H, W]` each."""
    _check_same_shape(x_t, v, "x_t", "velocity")
    step = sigma_grid(t_next, x_t) - sigma_grid(t, x_t)
    return (x_t.float() + step * v.float()).to(x_t.dtype)


def few_step_transition(
    x0_pred: torch.Tensor,
    t_next: TimestepLike,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Re-noise a predicted `x0` `[B, C, F, H, W]` to `t_next` with fresh noise, as DMD / Self-Forcing students do.

    `noise` (same shape) is used when given, otherwise standard normal noise is drawn with `generator`
    (on `x0_pred`'s device and dtype). Pass one of them at most. At `t_next = 0` this returns `x0_pred`.
    """
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or a generator to few_step_transition, not both")
    if noise is None:
        noise = torch.randn(x0_pred.shape, generator=generator, device=x0_pred.device, dtype=x0_pred.dtype)
    return add_noise(x0_pred, noise, t_next)

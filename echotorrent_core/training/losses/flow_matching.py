"""Flow-matching losses of the DiT stages (Wan2.1 / rectified flow).

`x_t = (1 - s) x0 + s eps`, the network predicts the velocity `v = eps - x0` (so `x0 = x_t - s v`), Wan timestep
`t = 1000 s`. Training timesteps are drawn with the same resolution shift the sampler uses
(`s' = k s / (1 + (k - 1) s)`), which moves training effort to high noise as Wan and SD3 do. Frame weights select
which latent frames carry the loss (the generated ones; the clean reference sink carries none).
"""

from __future__ import annotations

import torch

from ... import flow


def sample_timesteps(
    shape: tuple[int, ...],
    shift: float,
    generator: torch.Generator | None = None,
    distribution: str = "uniform",
    min_sigma: float = 1e-3,
) -> torch.Tensor:
    """Wan timesteps `[*shape]` float32 in `[1000 min_sigma, 1000]`: `s ~ U(0, 1)` ("uniform") or
    `sigmoid(N(0, 1))` ("logit_normal", SD3), then shifted by `shift`. Drawn on the CPU `generator`."""
    if distribution == "uniform":
        sigma = torch.rand(shape, generator=generator, dtype=torch.float64)
    elif distribution == "logit_normal":
        sigma = torch.sigmoid(torch.randn(shape, generator=generator, dtype=torch.float64))
    else:
        raise ValueError(f"timestep distribution must be 'uniform' or 'logit_normal', got {distribution!r}")
    sigma = flow.shift_sigma(sigma.clamp(min_sigma, 1.0), shift)
    return (sigma * flow.NUM_TRAIN_TIMESTEPS).float()


def masked_mean(values: torch.Tensor, frame_weights: torch.Tensor | None,
                cell_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `values` `[B, C, F, H, W]` weighted per latent frame by `frame_weights` `[B, F]` (None = plain mean)
    and per latent cell by `cell_weights` `[B, 1, 1, H, W]` (None = uniform; `motion_weights.motion_cell_weights`).

    Equals the plain mean over the frames whose weight is 1 when the weights are 0 / 1 and the cell weights are
    uniform; raises when all frame weights are 0."""
    if cell_weights is not None:
        expected = (values.shape[0], 1, 1, values.shape[3], values.shape[4])
        if tuple(cell_weights.shape) != expected:
            raise ValueError(f"cell_weights must be {list(expected)}, got {tuple(cell_weights.shape)}")
        values = values * cell_weights.to(values.device, values.dtype)
    if frame_weights is None:
        return values.mean()
    if frame_weights.shape != (values.shape[0], values.shape[2]):
        raise ValueError(
            f"frame_weights must be [B={values.shape[0]}, F={values.shape[2]}], got {tuple(frame_weights.shape)}"
        )
    weights = frame_weights.to(values.device, values.dtype)[:, None, :, None, None]
    total = weights.sum() * values.shape[1] * values.shape[3] * values.shape[4]
    if float(total) <= 0:
        raise ValueError("frame_weights select no frame: the loss would be empty")
    return (values * weights).sum() / total


def flow_matching_loss(
    velocity: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    frame_weights: torch.Tensor | None = None,
    cell_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Velocity MSE `||v_pred - (eps - x0)||^2` over the weighted frames (and cells).

    velocity, x0, noise `[B, C, F, H, W]` (the prediction at `x_t = (1 - s) x0 + s eps`); frame_weights `[B, F]`;
    cell_weights `[B, 1, 1, H, W]`. Returns `(loss, {"flow_mse": the unweighted-cell MSE})`: the logged MSE stays
    comparable whatever cell weights train the model.
    """
    if not velocity.shape == x0.shape == noise.shape:
        raise ValueError(
            f"velocity, x0 and noise must have one shape, got {tuple(velocity.shape)}, {tuple(x0.shape)}, "
            f"{tuple(noise.shape)}"
        )
    target = noise.float() - x0.float()
    error = (velocity.float() - target).square()
    loss = masked_mean(error, frame_weights, cell_weights)
    plain = loss if cell_weights is None else masked_mean(error.detach(), frame_weights)
    return loss, {"flow_mse": float(plain.detach())}


def x0_regression_loss(
    x0_pred: torch.Tensor,
    x0_target: torch.Tensor,
    frame_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clean-latent MSE `||x0_pred - x0_target||^2` over the weighted frames (CausVid ODE regression).

    x0_pred, x0_target `[B, C, F, H, W]`; frame_weights `[B, F]`. Returns `(loss, {"x0_mse": ...})`.
    """
    if x0_pred.shape != x0_target.shape:
        raise ValueError(
            f"x0_pred and x0_target must have one shape, got {tuple(x0_pred.shape)}, {tuple(x0_target.shape)}"
        )
    loss = masked_mean((x0_pred.float() - x0_target.float()).square(), frame_weights)
    return loss, {"x0_mse": float(loss.detach())}

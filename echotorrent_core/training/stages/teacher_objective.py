"""The bidirectional teacher's flow-matching objective on the streaming layout (reference = clean latent frame 0).

Per sample: one timestep `t` for the generated frames 1..F and `t = 0` on frame 0, the clean portrait latent, as the
streaming sampler's sink and the windowed sampler's first window hold it; `x_t = (1 - s) x0 + s eps` (frame 0 stays
exactly clean), bidirectional attention, velocity target `eps - x0`, loss on the generated frames only. Text and
audio are dropped independently per sample (empty text / all-zero audio features: the null conditions of CFG).
With `motion_weighting = k > 0` each latent cell's loss is weighted by `1 + k * its motion` (mean 1,
`losses.motion_weights`), so the few cells of the mouth count; a fixed map (`loss_map`, `losses.cell_map`)
multiplies them; the logged `flow_mse` stays unweighted.
"""

from __future__ import annotations

import torch

from ... import flow
from ...models.attention import Bidirectional
from ..losses.cell_map import combine_cell_weights
from ..losses.flow_matching import flow_matching_loss
from ..losses.motion_weights import motion_cell_weights
from .avatar_batch import conditioning


def reference_frame_timesteps(t_generated: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-sample timesteps `[B]` of the generated frames -> per-frame `[B, frames]` with 0 on the reference frame."""
    t = t_generated.float()[:, None].expand(-1, frames).clone()
    t[:, 0] = 0.0
    return t


def generated_frame_weights(batch: int, frames: int, device: torch.device) -> torch.Tensor:
    """`[B, frames]`: 0 on the reference frame, 1 on the generated ones."""
    weights = torch.ones(batch, frames, device=device)
    weights[:, 0] = 0.0
    return weights


def teacher_loss(
    model: torch.nn.Module,
    batch: dict,
    t_generated: torch.Tensor,
    noise: torch.Tensor,
    keep_text: torch.Tensor | None = None,
    keep_audio: torch.Tensor | None = None,
    motion_weighting: float = 0.0,
    map_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Flow-matching loss of one batch.

    batch `latents` `[B, C, 1 + F, h, w]` (+ `audio`, `text`, see avatar_batch); t_generated `[B]` Wan timesteps of the
    generated frames; noise like the latents; keep_text / keep_audio `[B]` bool (None = keep); motion_weighting:
    strength of the per-cell motion weights (0 = uniform); map_weights `[1, 1, 1, h, w]` fixed cell weights
    (`losses.cell_map`, None = none), multiplied with the motion weights. Returns `(loss, logs)`.
    """
    velocity = _velocity(model, batch, t_generated, noise, keep_text, keep_audio)
    loss, logs = _weighted_loss(velocity, batch["latents"], noise, motion_weighting, map_weights)
    return loss, logs | {"t_mean": float(t_generated.float().mean())}


def teacher_eval_losses(
    model: torch.nn.Module,
    batch: dict,
    t_generated: torch.Tensor,
    noise: torch.Tensor,
    keep_audio: torch.Tensor | None = None,
    map_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The unweighted flow loss and, when `map_weights` is given, the map-weighted one, from a single forward pass
    (arguments as `teacher_loss`); the map-weighted loss is None without a map."""
    velocity = _velocity(model, batch, t_generated, noise, None, keep_audio)
    plain, _ = _weighted_loss(velocity, batch["latents"], noise, 0.0, None)
    mapped = None if map_weights is None else _weighted_loss(velocity, batch["latents"], noise, 0.0, map_weights)[0]
    return plain, mapped


def _velocity(model: torch.nn.Module, batch: dict, t_generated: torch.Tensor, noise: torch.Tensor,
              keep_text: torch.Tensor | None, keep_audio: torch.Tensor | None) -> torch.Tensor:
    """The model's velocity `[B, C, 1 + F, h, w]` on the noised batch (reference frame clean)."""
    x0 = batch["latents"]
    frames = x0.shape[2]
    if frames < 2:
        raise ValueError(f"a teacher sample needs the reference frame and at least one generated frame, got {frames}")
    t = reference_frame_timesteps(t_generated.to(x0.device), frames)
    cond = conditioning(model, batch, range(frames), keep_text, keep_audio)
    return model(flow.add_noise(x0, noise, t), t, cond, attention=Bidirectional())


def _weighted_loss(velocity: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, motion_weighting: float,
                   map_weights: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
    size, frames = x0.shape[0], x0.shape[2]
    motion = motion_cell_weights(x0, motion_weighting) if motion_weighting else None
    cells = combine_cell_weights(motion, None if map_weights is None else map_weights.expand(size, -1, -1, -1, -1))
    return flow_matching_loss(velocity, x0, noise, generated_frame_weights(size, frames, x0.device), cells)

"""The scores ACC-DMD compares: bidirectional x0 predictions of teacher / critic on a re-noised student rollout.

A scored sequence is laid out as the teacher was trained (`teacher_objective`): the clean reference latent as frame 0
(t = 0) and the F generated frames, all at one timestep per sample, bidirectional attention. The critic (fake score)
is trained on the same layout with the teacher's flow-matching loss, on student samples in place of data latents.
"""

from __future__ import annotations

import torch

from ... import flow
from ...models.attention import Bidirectional
from .avatar_batch import conditioning
from .teacher_objective import reference_frame_timesteps


def sequence_batch(batch: dict, generated: torch.Tensor) -> dict:
    """`batch` with its generated latent frames replaced: `latents` = [reference `[B, C, 1, h, w]`, generated
    `[B, C, F, h, w]`] (audio / text kept)."""
    reference = batch["latents"][:, :, :1]
    if generated.shape[2] != batch["latents"].shape[2] - 1:
        raise ValueError(f"the rollout has {generated.shape[2]} latent frames, the sample "
                         f"{batch['latents'].shape[2] - 1} generated ones: set latent_frames = chunks x chunk_frames")
    return dict(batch, latents=torch.cat([reference, generated.to(reference.dtype)], dim=2))


def draw_dmd_timesteps(size: int, shift: float, min_t: float, max_t: float) -> torch.Tensor:
    """Per-sample Wan timesteps `[B]`: sigma ~ U(min_t, max_t) / 1000 (global torch RNG), then shifted by `shift`
    (DMD2 re-noises in [0.02, 0.98] of the schedule)."""
    if not 0.0 <= min_t < max_t <= flow.NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"expected 0 <= min_t < max_t <= 1000, got {min_t}, {max_t}")
    sigma = min_t + (max_t - min_t) * torch.rand(size, dtype=torch.float64)
    return (flow.shift_sigma(sigma / flow.NUM_TRAIN_TIMESTEPS, shift) * flow.NUM_TRAIN_TIMESTEPS).float()


def bidirectional_x0(model: torch.nn.Module, batch: dict, x_t: torch.Tensor, t: torch.Tensor,
                     with_audio: bool = True) -> torch.Tensor:
    """x0 `[B, C, F, h, w]` of the generated frames from `model` at `x_t` `[B, C, F, h, w]` and timesteps `t` `[B]`
    (reference frame of `batch` clean at t = 0); `with_audio=False` zeroes the audio features (CFG's null)."""
    sequence = sequence_batch(batch, x_t)
    frames = sequence["latents"].shape[2]
    t_frames = reference_frame_timesteps(t.to(x_t.device), frames)
    keep_audio = None if with_audio else torch.zeros(x_t.shape[0], dtype=torch.bool, device=x_t.device)
    cond = conditioning(model, sequence, range(frames), None, keep_audio)
    dtype = next(model.parameters()).dtype
    velocity = model(sequence["latents"].to(dtype), t_frames, cond, attention=Bidirectional())[:, :, 1:]
    return flow.x0_from_velocity(x_t.float(), velocity.float(), t_frames[:, 1:])

"""Teacher ODE trajectories for the student's ODE regression (CausVid / Self-Forcing initialisation).

For a data sample (reference latent + audio [+ text]) and a noise `eps`, the bidirectional teacher integrates the
flow ODE with Euler steps under its guidance policy (e.g. 3-pass text + audio CFG), the reference frame held clean
at t = 0 as in training. The sigma grid is Wan's many-step schedule starting at sigma 1 (pure noise) with the
student's few-step sigmas inserted, so the states at the student's timesteps are exact points of the discretised
trajectory. A pair is (x at every student timestep `[S, C, F, h, w]`, the ODE endpoint x0 `[C, F, h, w]`).
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from ... import flow
from ...guidance import ConditionVariant, GuidancePolicy
from ...models.attention import Bidirectional
from .avatar_batch import conditioning


def ode_sigmas(teacher_steps: int, shift: float, student_timesteps: torch.Tensor) -> torch.Tensor:
    """Descending sigmas `[K + 1]` from 1 to 0: the many-step schedule, 1.0 first, with `student_timesteps / 1000`."""
    base = flow.many_step_sigmas(teacher_steps, shift).double()
    grid = torch.cat([base, torch.ones(1, dtype=torch.float64), student_timesteps.double() / flow.NUM_TRAIN_TIMESTEPS])
    return torch.unique(grid.clamp(0.0, 1.0)).flip(0)


def _variant_conditions(teacher: torch.nn.Module, batch: dict, frames: int,
                        variants: list[ConditionVariant]) -> dict[ConditionVariant, object]:
    drop = torch.zeros(batch["latents"].shape[0], dtype=torch.bool, device=batch["latents"].device)
    return {v: conditioning(teacher, batch, range(frames), None if v.has_text else drop,
                            None if v.has_audio else drop) for v in variants}


@torch.no_grad()
def teacher_trajectory(
    teacher: torch.nn.Module,
    batch: dict,
    noise: torch.Tensor,
    policy: GuidancePolicy,
    sigmas: torch.Tensor,
    record_timesteps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate from `noise` `[B, C, F, h, w]` (batch `latents` `[B, C, 1 + F, h, w]` gives the reference frame 0).

    Returns (states `[B, S, C, F, h, w]` at `record_timesteps` `[S]` (each must be on the grid), x0 `[B, C, F, h, w]`).
    """
    reference = batch["latents"][:, :, :1].float()
    frames = 1 + noise.shape[2]
    steps = len(sigmas) - 1
    variants = sorted({v for i in range(steps) for v in policy.variants_for_step(i, steps)},
                      key=list(ConditionVariant).index)
    conditions = _variant_conditions(teacher, batch, frames, variants)
    dtype = next(teacher.parameters()).dtype
    wanted = {round(float(t) * 1e3): k for k, t in enumerate(record_timesteps.tolist())}
    states: list[torch.Tensor | None] = [None] * len(wanted)
    x = noise.float()
    for i in range(steps + 1):
        key = round(float(sigmas[i]) * flow.NUM_TRAIN_TIMESTEPS * 1e3)
        if key in wanted:
            states[wanted[key]] = x.clone()
        if i == steps:
            break
        t = torch.full((x.shape[0], frames), float(sigmas[i]) * flow.NUM_TRAIN_TIMESTEPS, device=x.device)
        t[:, 0] = 0.0
        full = torch.cat([reference, x], dim=2).to(dtype)
        velocity = policy.predict(
            lambda variant: teacher(full, t, conditions[variant], attention=Bidirectional()).float(), i, steps
        )[:, :, 1:]
        x = flow.euler_step(x, velocity, float(sigmas[i]) * flow.NUM_TRAIN_TIMESTEPS,
                            float(sigmas[i + 1]) * flow.NUM_TRAIN_TIMESTEPS)
    if any(state is None for state in states):
        raise ValueError(f"record_timesteps {record_timesteps.tolist()} are not all on the sigma grid")
    return torch.stack(states, dim=1), x


def generate_ode_pairs(
    teacher: torch.nn.Module,
    samples,
    count: int,
    policy: GuidancePolicy,
    sigmas: torch.Tensor,
    student_timesteps: torch.Tensor,
    seed: int,
    device: torch.device,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """`count` pairs cycling over the data `samples` (a Dataset of avatar samples), integrated `batch_size` at a
    time; pair i's noise is the i-th draw of a CPU generator seeded with `seed` (independent of the batching).

    Returns `{"latents": [N, C, 1 + F, h, w]` (reference + teacher x0), `"trajectory": [N, S, C, F, h, w]`, and the
    samples' `"audio"` / `"text"` when present}."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    progress = tqdm(total=count, desc="teacher ODE pairs")
    for first in range(0, count, batch_size):
        items = [samples[i % len(samples)] for i in range(first, min(count, first + batch_size))]
        batch = {key: torch.stack([item[key] for item in items]).to(device) for key in items[0]}
        shape = batch["latents"][0, :, 1:].shape
        noise = torch.stack([torch.randn(shape, generator=generator) for _ in items]).to(device)
        states, x0 = teacher_trajectory(teacher, batch, noise, policy, sigmas, student_timesteps)
        pairs = dict(batch, latents=torch.cat([batch["latents"][:, :, :1], x0], dim=2), trajectory=states)
        for key, value in pairs.items():
            out.setdefault(key, []).append(value.float().cpu())
        progress.update(len(items))
    progress.close()
    return {key: torch.cat(values) for key, values in out.items()}

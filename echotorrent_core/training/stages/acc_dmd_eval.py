"""Held-out measures for ACC-DMD that neither the critic nor the teacher being distilled computes.

For a student (streamed exactly as at inference, guidance single, fixed noise) and, as the reference it should
approach, the teacher sampled with audio CFG (Euler ODE, 2 passes per step):
- `sample_mse`: mean squared distance of the generated latents `[B, C, F, h, w]` to the real held-out latents
  (SynthTalk's video is largely fixed by portrait + audio, so a closer sample means better-followed audio);
- `audio_sensitivity`: mean |x(real audio) - x(audio of another held-out window)| with the same noise: how much
  the output depends on the audio (CFG raises it; a student that ignores audio scores 0);
- `audio_sensitivity_face` / `_background`: the same inside / outside the schedule's default face ellipse (mask
  > 0.5 on the latent grid; the preprocessing crops are face-centred), where ACC's spatial weight differs;
- `flow_mse`: the flow-matching velocity error on noised real latents, averaged over the model's own
  timesteps (student: the streaming "clean" cache context; teacher: bidirectional).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ...guidance import GuidancePolicy
from ...guidance_schedule import PhasedSpatiotemporalSchedule
from ...streaming.settings import StreamSettings
from ..rollout import denoising_timesteps, rollout
from .ode_pairs import ode_sigmas, teacher_trajectory
from .student_objective import causal_flow_loss
from .teacher_objective import teacher_loss

EVAL_SEED = 0


def heldout_batch(dataset: Dataset, count: int, device: torch.device) -> dict:
    """The first `count` held-out samples stacked (at least two, so every window can borrow another's audio)."""
    count = min(count, len(dataset))
    if count < 2:
        raise ValueError(f"the held-out measures need >= 2 held-out windows, got {len(dataset)}")
    return {key: torch.stack([dataset[i][key] for i in range(count)]).to(device) for key in dataset[0]}


def _other_audio(batch: dict) -> dict:
    return dict(batch, audio=batch["audio"].roll(1, dims=0))


def _noise(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(EVAL_SEED)).to(device)


def _summary(x: torch.Tensor, x_other: torch.Tensor, real: torch.Tensor, flow_mse: float) -> dict[str, float]:
    difference = (x - x_other).abs()
    face_mask = PhasedSpatiotemporalSchedule(inside_weight=1.0, outside_weight=0.0).spatial_weight(
        tuple(x.shape[-2:]), device=x.device)
    face = (face_mask > 0.5).expand_as(difference)
    return {"sample_mse": float((x - real).square().mean()), "audio_sensitivity": float(difference.mean()),
            "audio_sensitivity_face": float(difference[face].mean()),
            "audio_sensitivity_background": float(difference[~face].mean()), "flow_mse": flow_mse}


@torch.no_grad()
def heldout_metrics(student: torch.nn.Module, dataset: Dataset, settings: StreamSettings, count: int,
                    device: torch.device) -> dict[str, float]:
    """The student's held-out measures (module docstring); `count` windows."""
    batch = heldout_batch(dataset, count, device)
    real = batch["latents"][:, :, settings.sink_frames:]
    chunks = real.shape[2] // settings.chunk_frames

    def stream(source: dict) -> torch.Tensor:
        generator = torch.Generator().manual_seed(EVAL_SEED)
        return rollout(student, source["latents"][:, :, :1], source["audio"], settings, chunks,
                       text=source.get("text"), generator=generator).latents

    noise = _noise(tuple(real.shape), device)
    losses = []
    for t_value in denoising_timesteps(settings).tolist():
        t = torch.full((real.shape[0], chunks), float(t_value))
        losses.append(float(causal_flow_loss(student, batch, settings, t, noise, "clean")[0]))
    return _summary(stream(batch), stream(_other_audio(batch)), real, sum(losses) / len(losses))


@torch.no_grad()
def teacher_cfg_metrics(teacher: torch.nn.Module, dataset: Dataset, count: int, audio_scale: float, steps: int,
                        shift: float, device: torch.device) -> dict[str, float]:
    """The same measures for the teacher sampled with audio CFG `audio_scale` over `steps` Euler steps."""
    batch = heldout_batch(dataset, count, device)
    real = batch["latents"][:, :, 1:]
    policy = GuidancePolicy("audio_cfg", audio_scale=audio_scale)
    start = torch.tensor([1000.0])  # teacher_trajectory records states at >= 1 timestep; only its endpoint is used
    sigmas = ode_sigmas(steps, shift, start)
    noise = _noise(tuple(real.shape), device)
    x = teacher_trajectory(teacher, batch, noise, policy, sigmas, start)[1]
    x_other = teacher_trajectory(teacher, _other_audio(batch), noise, policy, sigmas, start)[1]
    full_noise = _noise(tuple(batch["latents"].shape), device)
    losses = [float(teacher_loss(teacher, batch, torch.full((real.shape[0],), float(t)), full_noise)[0])
              for t in (sigmas[:-1] * 1000).tolist()]
    return _summary(x, x_other, real, sum(losses) / len(losses))

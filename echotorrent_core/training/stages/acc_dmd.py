"""Stage `acc_dmd`: Distribution Matching Distillation of the causal few-step student with audio CFG baked in,
calibrated by ACC's phased spatiotemporal schedule (EchoTorrent part 2). The distilled student streams with
guidance mode single: one network pass per denoising step (plus the cache write).

Roles: generator = the student (initialised from the student stage's export, streaming with the StreamSettings
of its `student_stream.json`; EMA'd by the trainer when `ema_decay > 0`); critic = the fake score (initialised from
the critic file or the teacher); frozen = the teacher (real score). Per generator step the trainer runs
`critic_steps` (default 5) critic updates first.

- Generator (Self-Forcing): the student rolls out `latent_frames / chunk_frames` chunks on the streaming
  sampler's own chunk loop (`rollout.rollout`), each chunk stopping at a random exit step whose pass keeps
  gradients (all chunks, or the last `grad_tail_chunks`). The rollout x is re-noised at a per-sample shifted
  timestep; teacher with audio (c) / with zero audio (u) and critic give x0 predictions; the DMD gradient is
  the decoupled `(x0_fake - x0_c) - (a - 1) m (x0_c - x0_u)` (`losses/dmd.py`), normalised per sample by
  `mean |x - x0_real|`, loss `0.5 * ||x - stopgrad(x - grad)||^2`.
- ACC (the abstract gives no formula; our design): `m` is `PhasedSpatiotemporalSchedule.weight_map`, the schedule
  inference guidance uses, at phase `1 - t / 1000`, over the latent grid (the sample's `region_mask` `[H, W]` when
  the batch carries one, e.g. from SynthTalk's mouth parameters, else the schedule's default face ellipse) and over
  the rollout's latent frames (position in the chunk and in the rollout). `acc = false` gives m = 1: plain DMD
  against the CFG teacher.
- Critic: the teacher's flow-matching loss (bidirectional, reference frame clean) on a fresh no-grad rollout.

Logs: `dmd/matching` and `dmd/cfg_augmentation` (mean |term| before normalisation), `dmd/normaliser`, `dmd/t_mean`,
`dmd/acc_weight` (mean m). Cost per generator step on GPUs: one student rollout (steps x chunks chunk passes, one
with autograd per chunk) + 3 bidirectional passes (teacher c, u; critic), so ~2-3x a teacher step; 5 critic steps
add 5 no-grad rollouts + 5 critic passes. Exports `student.safetensors` + `student_stream.json` (drop-in for the
student) and `acc_dmd.json` (the guidance it distilled).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import flow
from ...checkpoints.loaders import save_dit
from ...guidance_schedule import PhasedSpatiotemporalSchedule
from ...models.dit import WanDiT
from ...streaming.settings import StreamSettings
from ..losses.dmd import decoupled_cfg_gradient, dmd_loss, normalised_dmd_gradient
from ..losses.flow_matching import sample_timesteps
from ..registry import register_stage
from ..rollout import denoising_timesteps, rollout
from ..stage import Stage
from .acc_dmd_eval import heldout_metrics
from .acc_dmd_scores import bidirectional_x0, draw_dmd_timesteps, sequence_batch
from .avatar_stage import AvatarDataConfig, AvatarSamples
from .dit_models import build_dit
from .teacher_objective import teacher_loss


@dataclass
class AccDmdConfig(AvatarDataConfig):
    """student: the student stage's DiT export (its `student_stream.json` beside it gives the StreamSettings);
    teacher: the frozen real score; critic_init: the fake score's start (default: the teacher);
    critic_steps: critic updates per generator update; audio_scale: the teacher's audio CFG scale a;
    acc: calibrate the CFG-augmentation term with `schedule` (PhasedSpatiotemporalSchedule fields; its chunk
    length follows the stream); dmd_shift / dmd_min_t / dmd_max_t: re-noising timesteps; critic_shift: the
    critic's flow-matching timesteps; grad_tail_chunks: chunks whose exit pass keeps gradients, counted from the
    end (0 = all); eval_samples: held-out windows evaluated."""

    student: str = ""
    teacher: str = ""
    critic_init: str | None = None
    critic_steps: int = 5
    audio_scale: float = 4.0
    acc: bool = True
    schedule: dict[str, Any] = field(default_factory=dict)
    dmd_shift: float = 5.0
    dmd_min_t: float = 20.0
    dmd_max_t: float = 980.0
    critic_shift: float = 5.0
    grad_tail_chunks: int = 0
    eval_samples: int = 4

    def __post_init__(self) -> None:
        if not self.student or not self.teacher:
            raise ValueError("the acc_dmd stage needs `student` (the student stage's export) and `teacher` files")
        if self.critic_steps < 0 or self.grad_tail_chunks < 0 or self.eval_samples < 1:
            raise ValueError("critic_steps and grad_tail_chunks must be >= 0 and eval_samples >= 1")
        if self.audio_scale < 0:
            raise ValueError(f"audio_scale must be >= 0, got {self.audio_scale}")
        PhasedSpatiotemporalSchedule.from_dict(self.schedule)

    @property
    def stream_settings(self) -> StreamSettings:
        path = Path(self.student).with_name("student_stream.json")
        if not path.is_file():
            raise ValueError(f"{path} not found: the acc_dmd stage streams with the settings the student stage "
                             "exported beside student.safetensors")
        return StreamSettings(**json.loads(path.read_text()))


@register_stage
class AccDmdStage(Stage):
    name = "acc_dmd"
    Config = AccDmdConfig
    fsdp_forward_methods = ("prepare_conditioning", "forward_chunk", "cross_attn.context_kv")

    def __init__(self, config: AccDmdConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        self.critic_steps = config.critic_steps
        self.settings = config.stream_settings
        if config.latent_frames % self.settings.chunk_frames:
            raise ValueError(f"latent_frames {config.latent_frames} must be whole chunks of "
                             f"{self.settings.chunk_frames}")
        self.steps = len(denoising_timesteps(self.settings))
        self.schedule = dataclasses.replace(PhasedSpatiotemporalSchedule.from_dict(config.schedule),
                                            chunk_frames=self.settings.chunk_frames)
        self.student = build_dit(config.student, None, trainer_config.seed)
        self.critic = build_dit(config.critic_init or config.teacher, None, trainer_config.seed)
        self.teacher = build_dit(config.teacher, None, trainer_config.seed).requires_grad_(False)
        self.samples = AvatarSamples(config, trainer_config.out_dir, self.device)

    @property
    def chunks(self) -> int:
        return self.config.latent_frames // self.settings.chunk_frames

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.student, "critic": self.critic}

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher}

    def blocks(self, role: str) -> list[nn.Module]:
        return list({"generator": self.student, "critic": self.critic, "teacher": self.teacher}[role].blocks)

    def dataset(self, split: str):
        return self.samples.dataset(split)

    def _rollout(self, batch: dict, with_grad: bool) -> torch.Tensor:
        """Student rollout `[B, C, F, h, w]` with a random exit step per chunk and fresh noise (global RNG)."""
        exits = torch.randint(0, self.steps, (self.chunks,)).tolist()
        grad_chunks = range(self.chunks - (self.config.grad_tail_chunks or self.chunks), self.chunks)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        with torch.set_grad_enabled(with_grad):
            result = rollout(self.student, batch["latents"][:, :, :1], batch.get("audio"), self.settings,
                             self.chunks, text=batch.get("text"), exit_steps=exits,
                             grad_chunks=grad_chunks if with_grad else (), generator=generator)
        return result.latents

    def acc_weight(self, t: torch.Tensor, latent_shape: tuple[int, ...], batch: dict) -> torch.Tensor:
        """ACC's weight m `[B, 1, F, h, w]` at timesteps t `[B]` (ones with `acc = false`)."""
        size, _, frames, h, w = latent_shape
        if not self.config.acc:
            return torch.ones(size, 1, frames, h, w, device=t.device)
        progress = (1.0 - t.float() / 1000.0).clamp(0.0, 1.0).cpu()
        frame_indices = torch.arange(frames, device=t.device)
        masks = batch.get("region_mask")
        if masks is None:
            return self.schedule.weight_map(progress, frame_indices, (h, w))
        return torch.cat([self.schedule.weight_map(progress[i : i + 1], frame_indices, (h, w), masks[i])
                          for i in range(size)])

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = self._rollout(batch, with_grad=True)
        size = x.shape[0]
        t = draw_dmd_timesteps(size, self.config.dmd_shift, self.config.dmd_min_t, self.config.dmd_max_t)
        t = t.to(x.device)
        with torch.no_grad():
            noise = torch.randn(x.shape).to(x)
            x_t = flow.add_noise(x.detach(), noise, t)
            x0_fake = bidirectional_x0(self.critic, batch, x_t, t)
            x0_cond = bidirectional_x0(self.teacher, batch, x_t, t)
            x0_uncond = bidirectional_x0(self.teacher, batch, x_t, t, with_audio=False)
            weight = self.acc_weight(t, tuple(x.shape), batch)
            terms = decoupled_cfg_gradient(x0_fake, x0_cond, x0_uncond, self.config.audio_scale, weight)
            grad = normalised_dmd_gradient(x, terms.total, terms.real)
        loss = dmd_loss(x, grad)
        normaliser = (x.detach() - terms.real).abs().mean()
        return loss, {
            "dmd/matching": float(terms.matching.abs().mean()),
            "dmd/cfg_augmentation": float(terms.augmentation.abs().mean()),
            "dmd/normaliser": float(normaliser),
            "dmd/t_mean": float(t.mean()),
            "dmd/acc_weight": float(weight.mean()),
        }

    def critic_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = self._rollout(batch, with_grad=False)
        sequence = sequence_batch(batch, x)
        t = sample_timesteps((x.shape[0],), self.config.critic_shift)
        noise = torch.randn(sequence["latents"].shape).to(sequence["latents"])
        loss, logs = teacher_loss(self.critic, sequence, t, noise)
        return loss, {f"critic/{key}": value for key, value in logs.items()}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out measures of the student (`acc_dmd_eval.heldout_metrics`), independent of the critic."""
        heldout = self.dataset("heldout")
        if heldout is None:
            return {}
        return heldout_metrics(self.student, heldout, self.settings, self.config.eval_samples, self.device)

    def export(self, out_dir: Path) -> list[Path]:
        model = WanDiT(self.student.cfg)
        model.load_state_dict(self.export_weights("generator"))
        out_dir = Path(out_dir)
        paths = [save_dit(model, out_dir / "student.safetensors")]
        for name, data in (("student_stream.json", asdict(self.settings)), ("acc_dmd.json", self._distilled())):
            target = out_dir / name
            partial = target.with_suffix(".json.tmp")
            partial.write_text(json.dumps(data, indent=2))
            partial.replace(target)
            paths.append(target)
        return paths

    def _distilled(self) -> dict[str, Any]:
        """What the student learned to reproduce in one pass: the audio CFG and its ACC schedule."""
        return {"inference_guidance": "single", "audio_scale": self.config.audio_scale, "acc": self.config.acc,
                "schedule": self.schedule.to_dict() if self.config.acc else None, "teacher": self.config.teacher}

"""Stage `student`: the causal streaming student, initialised from the teacher, on the inference chunk layout.

objective "ode" (CausVid / Self-Forcing initialisation): teacher ODE trajectories under CFG are generated once for
`ode_pairs` noises and stored in a safetensors cache (regenerated when the teacher file, the data or a setting
changes; the teacher is loaded only for that); each step regresses the student's x0 at the states of its own
few-step timesteps, one random step per chunk. objective "flow": flow matching on data latents with per-chunk
shifted timesteps (diffusion forcing with context "noisy", teacher forcing with context "clean"). The chunk / sink /
window / RoPE layout and few-step schedule are the StreamSettings the student streams with; `student_objective`
explains both contexts. Exports `student.safetensors`
and `student_stream.json` (the settings it was trained for).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ...checkpoints.loaders import load_dit, save_dit
from ...guidance import GuidancePolicy
from ...models.dit import WanDiT
from ...streaming.settings import StreamSettings
from ..losses.flow_matching import sample_timesteps
from ..registry import register_stage
from ..rollout import denoising_timesteps
from ..stage import Stage
from .avatar_batch import keep_mask
from .avatar_stage import AvatarDataConfig, AvatarSamples
from .dit_models import build_dit
from .ode_pairs import generate_ode_pairs, ode_sigmas
from .sample_files import TensorSamples, cached_samples, file_fingerprint
from .student_objective import causal_flow_loss, ode_regression_loss


@dataclass
class StudentConfig(AvatarDataConfig):
    """teacher: the teacher DiT file (ODE targets; also the initialisation unless `init` is given);
    chunk_frames / window_frames / steps / shift / rope_layout: the StreamSettings the student will stream with
    (latent_frames must be whole chunks); objective "ode" | "flow"; context "noisy" | "clean";
    clean_chunk_probability: chance a chunk is clean context (noisy context only); ode_pairs / heldout_pairs:
    teacher trajectories generated; teacher_steps / teacher_shift / guidance_*: the teacher's sampler for them;
    pair_seed: their noise; pair_batch: trajectories integrated at once."""

    teacher: str = ""
    init: str | None = None
    chunk_frames: int = 3
    window_frames: int | None = 6
    steps: int = 4
    shift: float = 5.0
    rope_layout: str = "relative"
    objective: str = "ode"
    context: str = "noisy"
    clean_chunk_probability: float = 0.0
    ode_pairs: int = 64
    heldout_pairs: int = 8
    teacher_steps: int = 20
    teacher_shift: float = 5.0
    guidance_mode: str = "text_audio_cfg"
    guidance_text_scale: float = 5.0
    guidance_audio_scale: float = 4.0
    pair_seed: int = 0
    pair_batch: int = 8
    flow_timestep_distribution: str = "uniform"
    text_dropout: float = 0.0
    audio_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ValueError("the student stage needs `teacher` = the teacher DiT file")
        if self.latent_frames % self.chunk_frames:
            raise ValueError(f"latent_frames {self.latent_frames} must be whole chunks of {self.chunk_frames}")
        if self.objective not in ("ode", "flow") or self.context not in ("noisy", "clean"):
            raise ValueError(f"objective must be 'ode' or 'flow' and context 'noisy' or 'clean', got "
                             f"{self.objective!r}, {self.context!r}")
        if not 0.0 <= self.clean_chunk_probability < 1.0:
            raise ValueError(f"clean_chunk_probability must be in [0, 1), got {self.clean_chunk_probability}")

    @property
    def stream_settings(self) -> StreamSettings:
        return StreamSettings(chunk_frames=self.chunk_frames, window_frames=self.window_frames, steps=self.steps,
                              shift=self.shift, rope_layout=self.rope_layout)

    @property
    def guidance(self) -> GuidancePolicy:
        return GuidancePolicy(self.guidance_mode, self.guidance_text_scale, self.guidance_audio_scale)


@register_stage
class StudentStage(Stage):
    name = "student"
    Config = StudentConfig
    fsdp_forward_methods = ("prepare_conditioning", "forward_chunk", "cross_attn.context_kv")

    def __init__(self, config: StudentConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        self.settings = config.stream_settings
        self.timesteps = denoising_timesteps(self.settings)
        self.model = build_dit(config.init or config.teacher, None, trainer_config.seed)
        self.samples = AvatarSamples(config, trainer_config.out_dir, self.device)
        self._pairs: dict[str, TensorSamples | None] = {}

    @property
    def chunks(self) -> int:
        return self.config.latent_frames // self.config.chunk_frames

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model}

    def blocks(self, role: str) -> list[nn.Module]:
        return list(self.model.blocks)

    def dataset(self, split: str):
        if self.config.objective == "flow":
            return self.samples.dataset(split)
        if split not in self._pairs:
            self._pairs[split] = self._ode_pairs(split)
        return self._pairs[split]

    def _ode_pairs(self, split: str) -> TensorSamples | None:
        config = self.config
        samples = self.samples.dataset(split)
        count = config.ode_pairs if split == "train" else config.heldout_pairs
        if samples is None or count == 0:
            return None
        sigmas = ode_sigmas(config.teacher_steps, config.teacher_shift, self.timesteps)
        fingerprint = {
            "kind": "ode_pairs", "teacher": file_fingerprint(config.teacher), "samples": len(samples),
            "data": self.samples.fingerprint(split), "count": count, "sigmas": sigmas.tolist(),
            "record": self.timesteps.tolist(), "guidance": config.guidance.to_dict(), "seed": config.pair_seed,
            "split": split,
        }
        seed = config.pair_seed + (0 if split == "train" else 1)
        path = self.samples.cache_dir / f"ode_pairs_{split}.safetensors"
        build = lambda: self._generate_pairs(samples, count, sigmas, seed)
        return TensorSamples(cached_samples(path, fingerprint, build))

    def _generate_pairs(self, samples, count: int, sigmas: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """The teacher is loaded only to integrate the trajectories (the loss never runs it), then released."""
        teacher = load_dit(self.config.teacher, dtype=torch.float32, device=self.device)[0]
        return generate_ode_pairs(teacher, samples, count, self.config.guidance, sigmas, self.timesteps, seed,
                                  self.device, self.config.pair_batch)

    def _step_indices(self, size: int) -> torch.Tensor:
        """Per-chunk student step `[B, chunks]` in [0, S), or S (clean context) with clean_chunk_probability."""
        steps = len(self.timesteps)
        index = torch.randint(0, steps, (size, self.chunks))
        if self.config.context == "noisy" and self.config.clean_chunk_probability > 0:
            index = torch.where(self._clean_chunks(size), torch.full_like(index, steps), index)
        return index

    def _clean_chunks(self, size: int) -> torch.Tensor:
        """`[B, chunks]` bool: chunks drawn as clean context (never the last one, which always carries loss)."""
        clean = torch.rand(size, self.chunks) < self.config.clean_chunk_probability
        clean[:, -1] = False
        return clean

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        size = batch["latents"].shape[0]
        if self.config.objective == "ode":
            return ode_regression_loss(self.model, batch, self.settings, self.timesteps, self._step_indices(size),
                                       self.config.context)
        t = sample_timesteps((size, self.chunks), self.config.shift,
                             distribution=self.config.flow_timestep_distribution)
        if self.config.context == "noisy" and self.config.clean_chunk_probability > 0:
            t = torch.where(self._clean_chunks(size), torch.zeros_like(t), t)
        latents = batch["latents"]
        noise = torch.randn(latents[:, :, self.settings.sink_frames:].shape).to(latents)
        keep_text = keep_mask(size, 1.0 - self.config.text_dropout, latents.device)
        keep_audio = keep_mask(size, 1.0 - self.config.audio_dropout, latents.device)
        return causal_flow_loss(self.model, batch, self.settings, t, noise, self.config.context, keep_text, keep_audio)

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out x0 MSE of the student at each of its timesteps (ODE pairs; every chunk at that step)."""
        heldout = self.dataset("heldout")
        if heldout is None or self.config.objective != "ode":
            return {}
        count = min(len(heldout), 8)
        batch = {k: torch.stack([heldout[i][k] for i in range(count)]).to(self.device) for k in heldout[0]}
        logs = {}
        for index, t_value in enumerate(self.timesteps.tolist()):
            steps = torch.full((count, self.chunks), index)
            loss, _ = ode_regression_loss(self.model, batch, self.settings, self.timesteps, steps, self.config.context)
            logs[f"x0_mse_t{int(t_value)}"] = float(loss)
        return logs

    def export(self, out_dir: Path) -> list[Path]:
        model = WanDiT(self.model.cfg)
        model.load_state_dict(self.export_weights("generator"))
        out_dir = Path(out_dir)
        dit_path = save_dit(model, out_dir / "student.safetensors")
        settings_path = out_dir / "student_stream.json"
        partial = settings_path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(asdict(self.settings), indent=2))
        partial.replace(settings_path)
        return [dit_path, settings_path]

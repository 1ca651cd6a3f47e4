"""Stage `teacher`: the bidirectional audio-conditioned teacher (flow matching on the streaming layout).

See `teacher_objective` for the loss. Exports `teacher.safetensors` (native Wan names + config metadata), which the
windowed bidirectional sampler and the student stage load with `load_dit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...checkpoints.loaders import save_dit
from ...models.dit import WanDiT
from ..losses.cell_map import load_cell_map, map_cell_weights
from ..losses.flow_matching import sample_timesteps
from ..registry import register_stage
from ..stage import Stage
from .avatar_batch import keep_mask
from .avatar_stage import AvatarDataConfig, AvatarSamples
from .dit_models import build_dit, dit_config, match_audio_features
from .teacher_objective import teacher_eval_losses, teacher_loss

EVAL_TIMESTEPS = (250.0, 500.0, 750.0, 950.0)


@dataclass
class TeacherConfig(AvatarDataConfig):
    """preset / dit / audio: the DiT's size (a config preset with DiTConfig and AudioAdapterConfig field overrides;
    the adapter's input layers x width are taken from the data's audio features);
    init: continue from a DiT file instead; shift / timestep_distribution: training timestep sampling;
    text_dropout / audio_dropout: per-sample probabilities of the null text / null audio (for CFG);
    motion_weighting: strength k of the per-cell loss weights `1 + k * motion` (`losses.motion_weights`; 0 = off);
    loss_map / loss_map_weighting: a fixed cell weight map file and its strength m, weights `1 + m * map / mean(map)`
    (`losses.cell_map`; None / 0 = off), multiplied with the motion weights."""

    preset: str = "tiny"
    dit: dict[str, Any] = field(default_factory=dict)
    audio: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    shift: float = 5.0
    timestep_distribution: str = "uniform"
    text_dropout: float = 0.1
    audio_dropout: float = 0.1
    motion_weighting: float = 0.0
    loss_map: str | None = None
    loss_map_weighting: float = 0.0


@register_stage
class TeacherStage(Stage):
    name = "teacher"
    Config = TeacherConfig
    fsdp_forward_methods = ("prepare_conditioning", "forward_chunk", "cross_attn.context_kv")

    def __init__(self, config: TeacherConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        self.samples = AvatarSamples(config, trainer_config.out_dir, self.device)
        cfg = None
        if not config.init:
            cfg = dit_config(config.preset, config.dit, config.audio)
            cfg = match_audio_features(cfg, self.samples.dataset("train")[0])
        self.model = build_dit(config.init, cfg, trainer_config.seed)
        self.map_weights = None
        if config.loss_map and config.loss_map_weighting:
            weights = map_cell_weights(load_cell_map(config.loss_map), config.loss_map_weighting)
            self.map_weights = weights.to(self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model}

    def blocks(self, role: str) -> list[nn.Module]:
        return list(self.model.blocks)

    def dataset(self, split: str):
        return self.samples.dataset(split)

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        latents = batch["latents"]
        size = latents.shape[0]
        t = sample_timesteps((size,), self.config.shift, distribution=self.config.timestep_distribution)
        noise = torch.randn(latents.shape).to(latents)
        keep_text = keep_mask(size, 1.0 - self.config.text_dropout, latents.device)
        keep_audio = keep_mask(size, 1.0 - self.config.audio_dropout, latents.device)
        return teacher_loss(self.model, batch, t, noise, keep_text, keep_audio, self.config.motion_weighting,
                            self.map_weights)

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out flow MSE at fixed timesteps and fixed noise (comparable across steps), with the audio and with
        the null audio: `audio_gain_tT` = MSE without audio / MSE with it (1.0: the teacher ignores the speech);
        with a loss map both also on the map-weighted MSE (`map_flow_mse_tT`, `map_audio_gain_tT`)."""
        heldout = self.dataset("heldout")
        if heldout is None:
            return {}
        generator = torch.Generator().manual_seed(0)
        logs = {}
        count = min(len(heldout), 8)
        batch = {k: torch.stack([heldout[i][k] for i in range(count)]).to(self.device) for k in heldout[0]}
        noise = torch.randn(batch["latents"].shape, generator=generator).to(self.device)
        silence = torch.zeros(count, dtype=torch.bool, device=self.device)
        for t_value in EVAL_TIMESTEPS:
            t = torch.full((count,), t_value)
            loss, mapped = teacher_eval_losses(self.model, batch, t, noise, map_weights=self.map_weights)
            silent, mapped_silent = teacher_eval_losses(self.model, batch, t, noise, keep_audio=silence,
                                                        map_weights=self.map_weights)
            logs[f"flow_mse_t{int(t_value)}"] = float(loss)
            logs[f"audio_gain_t{int(t_value)}"] = float(silent / loss)
            if self.map_weights is not None:
                logs[f"map_flow_mse_t{int(t_value)}"] = float(mapped)
                logs[f"map_audio_gain_t{int(t_value)}"] = float(mapped_silent / mapped)
        return logs

    def export(self, out_dir: Path) -> list[Path]:
        model = WanDiT(self.model.cfg)
        model.load_state_dict(self.export_weights("generator"))
        return [save_dit(model, Path(out_dir) / "teacher.safetensors")]

"""Typed payloads passed between EchoTorrent nodes, and the ComfyUI socket types that carry them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from comfy_api.latest import io

from echotorrent_core.guidance import GuidancePolicy
from echotorrent_core.pipeline import ModelBundle

ModelType = io.Custom("ECHOTORRENT_MODEL")
AudioFeaturesType = io.Custom("ECHOTORRENT_AUDIO_FEATURES")
GuidanceType = io.Custom("ECHOTORRENT_GUIDANCE")


@dataclass
class EchoTorrentModel(ModelBundle):
    """The loaded networks (DiT, base VAE, audio encoder, `reports` of how each file was read) plus an optional
    decoder refiner: a copy of the base VAE with fine-tuned decoder weights, or None."""

    refiner: torch.nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device


@dataclass(frozen=True)
class AudioFeatures:
    """Speech encoded for the DiT: `features` `[num_frames, layers, dim]` (one row per video frame, CPU) at `fps`,
    and the untouched ComfyUI AUDIO (`{"waveform": [1, C, S], "sample_rate": int}`) for muxing."""

    features: torch.Tensor
    fps: float
    audio: dict
    num_frames: int


@dataclass(frozen=True)
class Guidance:
    """A guidance policy and an optional face / mouth mask `[H, W]` in [0, 1] drawn on the reference image."""

    policy: GuidancePolicy
    region_mask: torch.Tensor | None = None

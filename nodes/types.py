"""Typed payloads passed between EchoTorrent nodes, and the ComfyUI socket types that carry them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from comfy_api.latest import io

from echotorrent_core.guidance import GuidancePolicy
from echotorrent_core.pipeline import ModelBundle
from echotorrent_core.streaming import StreamSettings

ModelType = io.Custom("ECHOTORRENT_MODEL")
AudioFeaturesType = io.Custom("ECHOTORRENT_AUDIO_FEATURES")
GuidanceType = io.Custom("ECHOTORRENT_GUIDANCE")
StreamType = io.Custom("ECHOTORRENT_STREAM")


@dataclass
class EchoTorrentModel(ModelBundle):
    """The loaded networks (DiT, base VAE, audio encoder, `reports` of how each file was read) plus an optional
    decoder refiner: a copy of the base VAE with fine-tuned decoder weights, or None. `patchers` holds the
    `comfy.model_patcher.ModelPatcher` of each network by role ("dit", "vae", "audio_encoder", "refiner"), through
    which ComfyUI loads, offloads and frees them (nodes/memory.py)."""

    refiner: torch.nn.Module | None = None
    patchers: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the DiT runs (its load device; its weights sit on the offload device between runs)."""
        patcher = self.patchers.get("dit")
        return patcher.load_device if patcher is not None else next(self.dit.parameters()).device


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


@dataclass(frozen=True)
class EchoTorrentStream:
    """A stream described, not yet run: the model, the portrait `reference` `[3, H, W]` in [-1, 1], the audio
    features, the chunk loop `settings`, an optional guidance policy (already matched to the chunk size) and region
    mask `[H, W]` fitted to the output frame, text embeddings `[1, L, text_dim]` (None = empty) and CLIP image
    features `[1, 257, image_dim]` for image-to-video checkpoints. Consumers run it chunk by chunk
    (nodes/stream.py `run_stream`)."""

    model: EchoTorrentModel
    reference: torch.Tensor
    audio: AudioFeatures
    settings: StreamSettings
    policy: GuidancePolicy | None = None
    region_mask: torch.Tensor | None = None
    text: torch.Tensor | None = None
    negative_text: torch.Tensor | None = None
    clip_fea: torch.Tensor | None = None

    @property
    def height(self) -> int:
        return int(self.reference.shape[1])

    @property
    def width(self) -> int:
        return int(self.reference.shape[2])

"""Building the DiT a stage trains: a preset with field overrides, or a saved file to continue from."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...checkpoints.loaders import load_dit
from ...config import AudioAdapterConfig, DiTConfig, get_preset
from ...models.dit import WanDiT
from .avatar_batch import check_avatar_model


def dit_config(preset: str, overrides: dict[str, Any], audio_overrides: dict[str, Any]) -> DiTConfig:
    """`preset`'s DiT config with `overrides` (DiTConfig fields) and `audio_overrides` (AudioAdapterConfig fields)."""
    base = get_preset(preset).dit
    allowed = {f.name for f in dataclasses.fields(DiTConfig)} - {"audio"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown DiT fields {unknown}; expected DiTConfig fields (audio ones go in [stage.audio])")
    cfg = dataclasses.replace(base, **{k: tuple(v) if k == "patch_size" else v for k, v in overrides.items()})
    if audio_overrides:
        if cfg.audio is None:
            raise ValueError(f"preset {preset!r} has no audio adapter to override")
        unknown = sorted(set(audio_overrides) - {f.name for f in dataclasses.fields(AudioAdapterConfig)})
        if unknown:
            raise ValueError(f"unknown audio adapter fields {unknown}")
        cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, **audio_overrides))
    return cfg


def match_audio_features(cfg: DiTConfig, sample: dict) -> DiTConfig:
    """`cfg` with the audio adapter's input (encoder layers x width) set from a sample's `audio` `[T, L, A]`."""
    audio = sample.get("audio")
    if audio is None or cfg.audio is None:
        if (audio is None) != (cfg.audio is None):
            raise ValueError("the data has audio features but the DiT has no audio adapter" if audio is not None
                             else "the DiT has an audio adapter but the data has no audio features")
        return cfg
    layers, width = audio.shape[-2:]
    return dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, encoder_layers=layers, audio_dim=width))


def build_dit(init: str | None, cfg: DiTConfig | None, seed: int) -> WanDiT:
    """The DiT loaded from `init` (float32) or freshly initialised from `cfg` with `seed`; trainable."""
    if init:
        model, _ = load_dit(init, dtype=torch.float32)
        model.requires_grad_(True)
    else:
        if cfg is None:
            raise ValueError("a DiT needs either an init file or a config")
        torch.manual_seed(seed)
        model = WanDiT(cfg)
    check_avatar_model(model)
    return model

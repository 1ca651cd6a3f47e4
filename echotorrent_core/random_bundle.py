"""Randomly initialised model bundles: real architectures with seeded random weights, for tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoints.loaders import save_audio_encoder, save_dit, save_vae
from .config import get_preset
from .pipeline import BUNDLE_FILES, BUNDLE_SETTINGS_FILE

# Output size used by a random bundle's generation defaults: small enough for the CPU.
RANDOM_BUNDLE_SIZE = {"tiny": (64, 64), "tiny-i2v": (64, 64)}
FULL_SIZE = (480, 832)


def write_random_bundle(folder: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write `dit.safetensors`, `vae.safetensors`, `audio_encoder.safetensors` and `bundle.json` into `folder`."""
    from .models.dit import WanDiT
    from .models.vae import WanVAE
    from .models.wav2vec import AudioEncoder

    spec = get_preset(preset)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_dit(WanDiT(spec.dit), folder / BUNDLE_FILES["dit"])
    save_vae(WanVAE(spec.vae), folder / BUNDLE_FILES["vae"])
    save_audio_encoder(AudioEncoder(spec.wav2vec), folder / BUNDLE_FILES["audio_encoder"])
    height, width = RANDOM_BUNDLE_SIZE.get(preset, FULL_SIZE)
    settings = {"preset": preset, "height": height, "width": width, "fps": 25.0, "random_weights": True}
    (folder / BUNDLE_SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return folder

"""What the DiT stages share: the data settings and the prepared, cached streaming-layout samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoints.loaders import load_audio_encoder, load_vae
from .prepared_data import prepare_avatar_samples
from .sample_files import TensorSamples, file_fingerprint, split_samples


@dataclass
class AvatarDataConfig:
    """data: a clip folder (index.json) or a prepared samples file (.safetensors with `latents` [+ `audio`]);
    vae / audio_encoder: the frozen encoders that prepare a clip folder (audio_encoder None = no audio layers);
    size: frame side in pixels; latent_frames: generated latent frames per sample (4 video frames each);
    windows_per_clip: samples cut from each clip; limit_clips: use at most this many clips per split;
    cache_dir: where prepared samples go (default: <out_dir>/data)."""

    data: str
    vae: str | None = None
    audio_encoder: str | None = None
    size: int = 64
    latent_frames: int = 3
    windows_per_clip: int = 4
    limit_clips: int | None = None
    heldout_split: str = "heldout"
    fps: float = 25.0
    cache_dir: str | None = None


class AvatarSamples:
    """Prepares (once) and serves the samples of each split; the encoders are loaded only when preparing."""

    def __init__(self, config: AvatarDataConfig, out_dir: str | Path, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.cache_dir = Path(config.cache_dir or Path(out_dir) / "data")
        self._datasets: dict[str, TensorSamples | None] = {}

    def dataset(self, split: str) -> TensorSamples | None:
        """Samples of "train" or "heldout" (None when the folder has no clip of that split)."""
        if split not in self._datasets:
            self._datasets[split] = self._load(split)
        return self._datasets[split]

    def _load(self, split: str) -> TensorSamples | None:
        config = self.config
        path = lambda name: self.cache_dir / f"avatar_{name}_{config.size}px_{config.latent_frames}f.safetensors"
        return split_samples(config.data, split, config.heldout_split, path, self._fingerprint, self._prepare)

    def fingerprint(self, split: str) -> dict:
        """What the samples of `split` are made from (source files, encoders, sizes)."""
        if self.config.data.endswith(".safetensors"):
            return {"kind": "samples_file", "file": file_fingerprint(self.config.data)}
        return self._fingerprint("train" if split == "train" else self.config.heldout_split)

    def _fingerprint(self, name: str) -> dict:
        config = self.config
        return {
            "kind": "avatar", "index": file_fingerprint(Path(config.data) / "index.json"), "split": name,
            "vae": file_fingerprint(config.vae), "audio_encoder": file_fingerprint(config.audio_encoder),
            "size": config.size, "latent_frames": config.latent_frames, "windows": config.windows_per_clip,
            "limit": config.limit_clips, "fps": config.fps,
        }

    def _prepare(self, split: str) -> dict[str, torch.Tensor]:
        config = self.config
        if config.vae is None:
            raise ValueError(f"preparing samples from the clip folder {config.data} needs [stage] vae = a VAE file")
        vae, _ = load_vae(config.vae, dtype=torch.float32, device=self.device)
        encoder = None
        if config.audio_encoder is not None:
            encoder, _ = load_audio_encoder(config.audio_encoder, device=self.device)
        return prepare_avatar_samples(config.data, split, vae.eval(), None if encoder is None else encoder.eval(),
                                      config.size, config.latent_frames, config.windows_per_clip, config.fps,
                                      config.limit_clips)

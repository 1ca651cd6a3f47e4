"""What the DiT stages share: the data settings and the streaming-layout samples of each split.

`data` is a clip folder (its preprocessing cache is built, or completed, or reused under `cache_dir` with the
frozen VAE and audio encoder: data/cache.py), a cache folder built before (`echotorrent cache build`), or a
`.safetensors` samples file with `latents` [N, z, 1 + F, h, w] and `audio` [N, 4F, layers, dim] (train split only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...checkpoints.loaders import load_audio_encoder, load_vae
from ...data.cache_dataset import CachedWindows
from .sample_files import TensorSamples, file_fingerprint
from .streaming_windows import StreamingWindows, ensure_cache, is_cache


@dataclass
class AvatarDataConfig:
    """data: a clip folder, a cache folder or a samples file (module docstring); vae / audio_encoder: the frozen
    encoders that build a clip folder's cache; size: crop side in pixels; latent_frames: generated latent frames
    per sample (4 video frames each); window_stride: frames between window starts (default: non-overlapping);
    heldout_split: the clips' split used for held-out evaluation; detector: face detector of the crops;
    cache_dir: where the cache goes (default: <out_dir>/data)."""

    data: str
    vae: str | None = None
    audio_encoder: str | None = None
    size: int = 64
    latent_frames: int = 3
    window_stride: int | None = None
    heldout_split: str = "heldout"
    fps: float = 25.0
    detector: str = "auto"
    cache_dir: str | None = None


def split_name(split: str, heldout_split: str) -> str:
    """The clips' split behind the trainer's "train" / "heldout"."""
    return "train" if split == "train" else heldout_split


class AvatarSamples:
    """Serves the samples of each split; a clip folder's cache is built once, on first use."""

    def __init__(self, config: AvatarDataConfig, out_dir: str | Path, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.cache_dir = Path(config.cache_dir or Path(out_dir) / "data")
        self._cache: Path | None = None
        self._datasets: dict[str, Dataset | None] = {}

    def dataset(self, split: str) -> Dataset | None:
        """Samples of "train" or "heldout" (None when there is none of that split; an error for train)."""
        if split not in self._datasets:
            self._datasets[split] = self._load(split)
        return self._datasets[split]

    def fingerprint(self, split: str) -> dict:
        """What the samples of `split` are made from (for caches derived from them, e.g. ODE pairs)."""
        config = self.config
        if config.data.endswith(".safetensors"):
            return {"kind": "samples_file", "file": file_fingerprint(config.data)}
        cache = self.cache_folder()
        return {"kind": "cache", "index": file_fingerprint(cache / "index.json"), "latent_frames": config.latent_frames,
                "split": split_name(split, config.heldout_split)}

    def _load(self, split: str) -> Dataset | None:
        config = self.config
        if config.data.endswith(".safetensors"):
            return TensorSamples(config.data) if split == "train" else None
        windows = CachedWindows(self.cache_folder(), split=split_name(split, config.heldout_split))
        if len(windows) == 0:
            if split == "train":
                raise ValueError(f"{config.data} gives no training window (no usable clip of split 'train')")
            return None
        return StreamingWindows(windows, config.latent_frames)

    def cache_folder(self) -> Path:
        """The cache the samples come from: `data` itself, or the clip folder's cache (built on first use)."""
        config = self.config
        if is_cache(config.data):
            return Path(config.data)
        if self._cache is None:
            if config.vae is None or config.audio_encoder is None:
                raise ValueError(f"building the cache of the clip folder {config.data} needs [stage] vae and "
                                 "audio_encoder files")
            vae, _ = load_vae(config.vae, dtype=torch.float32, device=self.device)
            encoder, _ = load_audio_encoder(config.audio_encoder, device=self.device)
            frames = 1 + 4 * config.latent_frames
            self._cache = ensure_cache(config.data, self.cache_dir / "avatar_cache", vae.eval(), encoder.eval(),
                                       config.size, frames, config.window_stride or frames, config.fps,
                                       config.detector)
        return self._cache

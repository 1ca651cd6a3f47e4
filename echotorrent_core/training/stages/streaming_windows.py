"""DiT training samples from the preprocessing cache (data/cache.py), in the streaming layout of `avatar_batch`.

A cached window is `[portrait frame 0, frames 1 .. 4k]` encoded in one causal VAE call, with audio rows under every
frame. Sample = its first `1 + F` latents (a causal prefix: exactly the latents of the first 1 + 4F frames) and the
audio rows of frames 1 .. 4F; `pad_audio` then repeats row 1 in front, as the streaming sampler pads the speech of
a stream whose portrait is frame 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...data.cache import CacheSettings, build_cache
from ...data.cache_dataset import CachedWindows
from ...data.cache_index import CACHE_FORMAT
from ...data.clips import ClipSettings


def is_cache(path: str | Path) -> bool:
    """Whether `path` is a preprocessing cache folder (its index.json has the cache format)."""
    index = Path(path) / "index.json"
    return index.is_file() and json.loads(index.read_text()).get("format") == CACHE_FORMAT


class StreamingWindows(Dataset):
    """`{"latents": [z, 1 + F, h, w], "audio": [4F, layers, dim]}` per cached window (F generated latent frames)."""

    def __init__(self, windows: CachedWindows, latent_frames: int) -> None:
        self.windows = windows
        self.latent_frames = latent_frames
        stored = 1 + (windows.settings["clips"]["window_frames"] - 1) // 4
        if stored < 1 + latent_frames:
            raise ValueError(f"the cache at {windows.cache_dir} holds {stored} latent frames per window; the stage "
                             f"needs 1 + {latent_frames} (build it with window_frames >= {1 + 4 * latent_frames})")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.windows[index]
        frames = 4 * self.latent_frames
        return {"latents": item["latents"][:, : 1 + self.latent_frames],
                "audio": item["audio_features"][1 : 1 + frames]}


def ensure_cache(clips: str | Path, cache_dir: Path, vae: torch.nn.Module, audio_encoder: torch.nn.Module,
                 size: int, window_frames: int, window_stride: int, fps: float, detector: str) -> Path:
    """Build (or complete, or reuse) the preprocessing cache of a clip folder; returns the cache folder."""
    settings = CacheSettings(clips=ClipSettings(fps=fps, size=size, window_frames=window_frames,
                                                window_stride=window_stride, detector=detector))
    build_cache(clips, cache_dir, vae, audio_encoder, settings)
    return cache_dir

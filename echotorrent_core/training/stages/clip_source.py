"""Reading the shared clip-folder format (`index.json` + `clips/<id>.mp4`) into square frames and mono audio.

Stand-in for the project's clip loader (data/clips.py) inside the first stages: clips must already be at the
stage's fps; frames are centre-cropped to a square and resized to the training size (area averaging).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ...media.audio import normalize_loudness, to_mono_resampled
from ...media.video_reader import read_video_frames

CLIP_FORMAT = "echotorrent-clips/1"


@dataclass(frozen=True)
class Clip:
    """frames `[T, 3, S, S]` uint8; audio mono `[samples]` float32 at `sample_rate` (None when silent / absent)."""

    id: str
    frames: torch.Tensor
    audio: torch.Tensor | None
    sample_rate: int
    fps: float


def read_index(folder: str | Path) -> dict:
    """The folder's `index.json`, checked for the clip format."""
    path = Path(folder) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a clip folder ({CLIP_FORMAT}, e.g. written by "
                                "`echotorrent data synthtalk`)")
    index = json.loads(path.read_text())
    if index.get("format") != CLIP_FORMAT or not isinstance(index.get("clips"), list):
        raise ValueError(f"{path} is not a {CLIP_FORMAT} index (format {index.get('format')!r})")
    return index


def square_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`[T, H, W, 3]` uint8 -> centre square crop resized to `[T, 3, size, size]` uint8."""
    height, width = frames.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frames[:, top : top + side, left : left + side].permute(0, 3, 1, 2).float()
    if side != size:
        crop = F.interpolate(crop, size=(size, size), mode="area" if side > size else "bilinear")
    return crop.round().clamp(0, 255).to(torch.uint8)


def iter_clips(folder: str | Path, split: str, size: int, sample_rate: int, fps: float,
               limit: int | None = None) -> Iterator[Clip]:
    """Clips of `split` in index order (at most `limit`), read, squared to `size` and resampled to `sample_rate`
    mono at -23 LUFS (as the pipeline feeds the audio encoder)."""
    folder = Path(folder)
    entries = [c for c in read_index(folder)["clips"] if c.get("split") == split][:limit]
    for entry in entries:
        frames, clip_fps, channels, rate = read_video_frames(folder / entry["video"])
        if abs(clip_fps - fps) > 1e-3:
            raise ValueError(f"clip {entry['id']} runs at {clip_fps} fps; the stage expects {fps} fps clips")
        audio = None
        if channels is not None and channels.numel():
            audio = normalize_loudness(to_mono_resampled(channels, rate, sample_rate), sample_rate)
        yield Clip(entry["id"], square_frames(frames, size), audio, sample_rate, fps)

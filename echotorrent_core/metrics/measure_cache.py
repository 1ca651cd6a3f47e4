"""Per-clip instrument outputs saved as safetensors, so training and repeated evaluations run the face mesh and the
phone recogniser once per clip. A cache file is reused only when the source video's size and modification time
and the measurement version all match; otherwise it is recomputed and rewritten atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints.safetensors_io import read_state_dict, write_state_dict
from .audio_mel import log_mel, mel_windows
from ..data.clip_folder import ClipEntry
from .measurements import EVAL_FPS, measure_file

MEASURE_VERSION = "2"
METADATA_KEY = "echotorrent_measurements"


@dataclass(frozen=True)
class ClipFeatures:
    """What training needs of one clip: mouth `crops` `[T, 32, 48]`, `audio_windows` `[T, 1, 40, 20]`, the
    landmark `lip_gap` `[T]`, the `phone_opening` `[T]` and the face-mesh `found` mask `[T]`."""

    entry: ClipEntry
    crops: torch.Tensor
    audio_windows: torch.Tensor
    lip_gap: torch.Tensor
    phone_opening: torch.Tensor
    found: torch.Tensor


def _source_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"version": MEASURE_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def clip_features(entry: ClipEntry, cache_dir: str | Path | None = None) -> ClipFeatures:
    """Measure a clip (or read its valid cache entry from `cache_dir`)."""
    stamp = _source_stamp(entry.video)
    cache = Path(cache_dir) / f"{entry.id}.safetensors" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        tensors, metadata = read_state_dict(cache)
        if json.loads(metadata.get(METADATA_KEY, "{}")) == stamp:
            return _from_tensors(entry, tensors)
    measured = measure_file(entry.video)
    tensors = {"crops": measured.crops.half(), "mel": log_mel(measured.audio, measured.rate),
               "lip_gap": measured.lip_gap, "phone_opening": measured.phone_opening,
               "found": measured.track.found.to(torch.uint8)}
    if cache is not None:
        write_state_dict(cache, tensors, {METADATA_KEY: json.dumps(stamp)})
    return _from_tensors(entry, tensors)


def _from_tensors(entry: ClipEntry, tensors: dict[str, torch.Tensor]) -> ClipFeatures:
    crops = tensors["crops"].float()
    return ClipFeatures(entry, crops, mel_windows(tensors["mel"], len(crops), EVAL_FPS), tensors["lip_gap"],
                        tensors["phone_opening"], tensors["found"].bool())

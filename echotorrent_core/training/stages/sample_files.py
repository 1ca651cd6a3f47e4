"""Prepared training samples in safetensors (no pickle): in-memory / file-backed tensors, cached builds.

A samples file holds same-shaped tensors `name -> [N, ...]` plus a JSON fingerprint in the metadata (what made
them); `cached_samples` rebuilds it only when the fingerprint changes; `split_samples` does so per split of a clip
folder. `TensorSamples` serves sample i as
`{name: tensor[i]}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...checkpoints.safetensors_io import read_header, read_state_dict, write_state_dict
from ...data.clip_folder import scan_clip_folder

FINGERPRINT_KEY = "echotorrent_samples"


def file_fingerprint(path: str | Path | None) -> dict | None:
    """Identity of a source file (path, size, mtime) for invalidation; None for no file."""
    if path is None:
        return None
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cached_samples(path: str | Path, fingerprint: dict, build: Callable[[], dict[str, torch.Tensor]]) -> Path:
    """`path` if it holds samples made with `fingerprint`, else `build()` written there atomically."""
    path = Path(path)
    wanted = json.dumps(fingerprint, sort_keys=True)
    if path.is_file() and read_header(path)[1].get(FINGERPRINT_KEY) == wanted:
        return path
    tensors = build()
    sizes = {name: value.shape[0] for name, value in tensors.items()}
    if len(set(sizes.values())) != 1 or not all(sizes.values()):
        raise ValueError(f"prepared samples must all have the same non-zero count, got {sizes}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_state_dict(path, {k: v.contiguous() for k, v in tensors.items()}, {FINGERPRINT_KEY: wanted})
    return path


def split_samples(data: str, split: str, heldout_split: str, path: Callable[[str], Path],
                  fingerprint: Callable[[str], dict], build: Callable[[str], dict[str, torch.Tensor]]):
    """Samples of "train" / "heldout" from `data`: a prepared `.safetensors` file (train only), or a clip folder
    whose split (`train`, or `heldout_split` for held-out) is prepared by `build(name)` into `path(name)` and reused
    while `fingerprint(name)` matches. None when the split has no clip (an error for train)."""
    if data.endswith(".safetensors"):
        return TensorSamples(data) if split == "train" else None
    name = "train" if split == "train" else heldout_split
    if not any(entry.split == name for entry in scan_clip_folder(data)):
        if split == "train":
            raise ValueError(f"{data} has no clip of split 'train'")
        return None
    return TensorSamples(cached_samples(path(name), fingerprint(name), lambda: build(name)))


class TensorSamples(Dataset):
    """Sample i = `{name: tensors[name][i]}` of a prepared samples file (or of in-memory tensors)."""

    def __init__(self, source: str | Path | dict[str, torch.Tensor]) -> None:
        self.tensors = source if isinstance(source, dict) else read_state_dict(source)[0]
        counts = {value.shape[0] for value in self.tensors.values()}
        if len(counts) != 1:
            raise ValueError(f"sample tensors must share their first dimension, got {sorted(counts)}")
        self.count = counts.pop()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in self.tensors.items()}

"""`CachedWindows`: a torch Dataset over a preprocessing cache (the window contract is in `cache.py`)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .cache_index import read_index

PIXEL_KEYS = ("reference_pixels", "pixels")


class CachedWindows(torch.utils.data.Dataset):
    """Every cached window (optionally of one split), as dicts of float32 tensors (see `cache.py`).

    `expected_fingerprint` (e.g. `fingerprint.encoder_fingerprint` of the trainer's encoders) refuses a cache built
    with other encoders. An unfinished build is refused unless `allow_incomplete`.
    """

    def __init__(self, cache_dir: str | Path, split: str | None = None, expected_fingerprint: str | None = None,
                 allow_incomplete: bool = False) -> None:
        self.cache_dir = Path(cache_dir)
        index = read_index(self.cache_dir)
        if index is None:
            raise FileNotFoundError(f"no preprocessing cache at {self.cache_dir} (index.json missing); build it "
                                    "with `echotorrent cache build`")
        if not index["complete"] and not allow_incomplete:
            raise ValueError(f"the cache at {self.cache_dir} is not finished; run the build again to resume it")
        if expected_fingerprint is not None and index["fingerprint"] != expected_fingerprint:
            raise ValueError(f"the cache at {self.cache_dir} was built with other encoders or settings "
                             f"(fingerprint {index['fingerprint'][:12]}, expected {expected_fingerprint[:12]})")
        self.fingerprint: str = index["fingerprint"]
        self.settings: dict = index["settings"]
        self._windows = [(shard["file"], window) for shard in index["shards"] for window in shard["windows"]
                         if split is None or window["split"] == split]

    def __len__(self) -> int:
        return len(self._windows)

    def info(self, i: int) -> dict:
        """The window's descriptor: clip, window, start, frames, crop, face_fraction, split, domain, identity, voice."""
        return dict(self._windows[i][1])

    def __getitem__(self, i: int) -> dict:
        shard, window = self._windows[i]
        prefix = f"{window['key']}."
        item: dict = {"params": {}}
        with safe_open(str(self.cache_dir / shard), framework="pt") as handle:
            for key in handle.keys():
                if not key.startswith(prefix):
                    continue
                name, value = key[len(prefix):], handle.get_tensor(key)
                if name.startswith("params."):
                    item["params"][name[len("params."):]] = value
                else:
                    item[name] = _as_float(name, value)
        item["reference_latent"] = item["latents"][:, :1]
        return item


def _as_float(name: str, value: torch.Tensor) -> torch.Tensor:
    """Stored tensors -> the contract's layout: uint8 frames `[..., S, S, 3]` -> `[3, ..., S, S]` in [-1, 1]."""
    if name in PIXEL_KEYS:
        moved = value.movedim(-1, 0)
        return moved.float() / 127.5 - 1.0
    return value.float()

"""The preprocessing cache's JSON index: read, written atomically (temporary file, then rename), and its shards.

`CACHE/index.json`:
`{"format": "echotorrent-cache/1", "fingerprint": sha256, "settings": {...}, "complete": bool, "next_shard": int,
  "shards": [{"file": "shards/000012.safetensors", "clip": id, "signature": [size, mtime_ns],
              "windows": [window descriptor, ...]}, ...],
  "clips": {id: {"status": "done" | "skipped", "reason": str | None, "windows": int, "signature": [size, mtime_ns]}}}`
A window descriptor: `{"key", "clip", "window", "start", "frames", "crop": [x0, y0, side], "face_fraction", "split",
"domain", "identity", "voice"}`; `key` prefixes its tensors in the shard (`"<key>.latents"`, ...).
A shard is listed only after it is completely written, so an interrupted build never leaves a listed shard
corrupt; unlisted files in `shards/` are leftovers and are removed by the next build.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

CACHE_FORMAT = "echotorrent-cache/1"
INDEX_FILE = "index.json"
SHARD_FOLDER = "shards"


def empty_index(fingerprint: str, settings: dict) -> dict:
    return {"format": CACHE_FORMAT, "fingerprint": fingerprint, "settings": settings, "complete": False,
            "next_shard": 0, "shards": [], "clips": {}}


def read_index(cache_dir: str | Path) -> dict | None:
    """The index of `cache_dir`, or None when there is none; raises ValueError for a foreign or broken file."""
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete the cache folder to rebuild it") from None
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not an {CACHE_FORMAT!r} cache index")
    return index


def write_index(cache_dir: str | Path, index: dict) -> None:
    """Replace the index atomically (a reader sees the old or the new one, never a partial file)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_FILE}.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(index, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, cache_dir / INDEX_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def next_shard_path(cache_dir: str | Path, index: dict) -> tuple[str, Path]:
    """(relative name, path) of the next shard; the counter advances when the shard is listed."""
    name = f"{SHARD_FOLDER}/{index['next_shard']:06d}.safetensors"
    return name, Path(cache_dir) / name


def remove_unlisted_files(cache_dir: str | Path, index: dict) -> list[Path]:
    """Delete files in `shards/` that the index does not list (interrupted writes, dropped clips)."""
    folder = Path(cache_dir) / SHARD_FOLDER
    if not folder.is_dir():
        return []
    listed = {shard["file"] for shard in index["shards"]}
    removed = [p for p in folder.iterdir() if p.is_file() and f"{SHARD_FOLDER}/{p.name}" not in listed]
    for path in removed:
        path.unlink()
    return removed


def drop_clip(index: dict, clip_id: str) -> None:
    """Forget a clip: its shards leave the index (their files go with `remove_unlisted_files`)."""
    index["shards"] = [shard for shard in index["shards"] if shard["clip"] != clip_id]
    index["clips"].pop(clip_id, None)


def file_signature(path: Path) -> list[int]:
    """[size, mtime_ns] of a clip file: a changed file is processed again."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]

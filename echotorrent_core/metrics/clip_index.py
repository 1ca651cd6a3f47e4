"""The clips of an evaluation folder: the shared clip-folder format (`index.json`, "echotorrent-clips/1"), or any
folder of video files (every clip then counts as held out, with unknown identity)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

INDEX_FORMAT = "echotorrent-clips/1"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class ClipEntry:
    """One clip: its id, video path, split, identity and voice (None when unknown) and domain."""

    id: str
    video: Path
    split: str
    identity: str | None
    voice: str | None
    domain: str | None


def read_clips(folder: str | Path) -> list[ClipEntry]:
    """Entries of `folder/index.json`, or of the video files in `folder` (sorted) when it has no index."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"clip folder not found: {folder}")
    index = folder / "index.json"
    if not index.is_file():
        videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise ValueError(f"{folder} has no index.json and no video files ({', '.join(VIDEO_SUFFIXES)})")
        return [ClipEntry(p.stem, p, "heldout", None, None, None) for p in videos]
    data = json.loads(index.read_text())
    if data.get("format") != INDEX_FORMAT or not isinstance(data.get("clips"), list):
        raise ValueError(f"{index} is not a clip index: expected {{'format': '{INDEX_FORMAT}', 'clips': [...]}}")
    return [ClipEntry(c["id"], folder / c["video"], c.get("split", "train"), c.get("identity"), c.get("voice"),
                      c.get("domain")) for c in data["clips"]]

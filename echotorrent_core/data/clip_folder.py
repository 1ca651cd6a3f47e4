"""Which clips a folder holds: the shared clip-folder format (`index.json`) or a scanned folder of raw clips.

Clip-folder format (written by SynthTalk, read here and by the trainers):
`DIR/index.json` `{"format": "echotorrent-clips/1", "fps": 25, "sample_rate": 16000, "clips": [{"id", "video",
"params" (or null), "split", "domain", "identity", "voice", "frames", "seconds"}, ...]}` with paths relative to DIR.
A folder without `index.json` is scanned recursively for `.mp4` / `.mov` / `.mkv` files (sorted; the id is the
path relative to DIR without the extension, `/` replaced by `__`; split "train").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CLIP_FOLDER_FORMAT = "echotorrent-clips/1"
INDEX_FILE = "index.json"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


@dataclass(frozen=True)
class ClipEntry:
    """One clip of a folder: its video file, optional per-frame ground truth, and labels."""

    id: str
    video: Path
    params: Path | None = None
    split: str = "train"
    domain: str | None = None
    identity: str | None = None
    voice: str | None = None
    frames: int | None = None  # frames of the video at `params_fps` (the parameters' rows), when known
    params_fps: float | None = None  # frame rate of the parameter rows (the index's fps)

    def labels(self) -> dict[str, str | None]:
        """The string labels a cached window carries."""
        return {"split": self.split, "domain": self.domain, "identity": self.identity, "voice": self.voice}


def scan_clip_folder(folder: str | Path) -> list[ClipEntry]:
    """The clips of `folder` (index.json if present, else every video file below it), in a fixed order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"clip folder not found: {folder}")
    index = folder / INDEX_FILE
    if index.is_file():
        return _read_index(index)
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    return [ClipEntry(id=p.relative_to(folder).with_suffix("").as_posix().replace("/", "__"), video=p) for p in videos]


def _read_index(index: Path) -> list[ClipEntry]:
    try:
        payload = json.loads(index.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{index} is not valid JSON ({error}); expected the {CLIP_FOLDER_FORMAT} index") from None
    if not isinstance(payload, dict) or payload.get("format") != CLIP_FOLDER_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{index} must be a {CLIP_FOLDER_FORMAT!r} index, got format {found!r}")
    fps = float(payload.get("fps", 25.0))
    entries, seen = [], set()
    for number, clip in enumerate(payload.get("clips", [])):
        if not isinstance(clip, dict) or not clip.get("id") or not clip.get("video"):
            raise ValueError(f"{index}: clip {number} needs at least 'id' and 'video', got {clip!r}")
        if clip["id"] in seen:
            raise ValueError(f"{index}: clip id {clip['id']!r} appears twice")
        seen.add(clip["id"])
        params = clip.get("params")
        entries.append(ClipEntry(
            id=str(clip["id"]), video=index.parent / clip["video"],
            params=None if params is None else index.parent / params, split=clip.get("split") or "train",
            domain=clip.get("domain"), identity=clip.get("identity"), voice=clip.get("voice"),
            frames=clip.get("frames"), params_fps=fps,
        ))
    return entries

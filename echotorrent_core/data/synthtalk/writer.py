"""Write SynthTalk clips in the shared clip-folder format (`DIR/index.json`, `clips/<id>.mp4`,
`params/<id>.safetensors`), interruption-safe: files appear under their final names only when complete (temporary
name, then rename), the index is rewritten atomically after every clip, and a rerun skips finished clips."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from ...checkpoints.safetensors_io import write_state_dict
from ...media import Mp4StreamWriter
from .clip import FPS, Clip, ClipSpec, params_metadata, render_clip
from .speech import SAMPLE_RATE

CLIP_FOLDER_FORMAT = "echotorrent-clips/1"
VIDEO_CRF = 18


def read_index(folder: Path) -> dict[str, dict]:
    """Entries of an existing `index.json` by id (empty when there is none)."""
    path = folder / "index.json"
    if not path.is_file():
        return {}
    index = json.loads(path.read_text())
    if index.get("format") != CLIP_FOLDER_FORMAT or index.get("fps") != FPS:
        raise ValueError(f"{path} is not a {CLIP_FOLDER_FORMAT} index at {FPS} fps; use another --out folder")
    return {entry["id"]: entry for entry in index["clips"]}


def write_index(folder: Path, entries: dict[str, dict]) -> Path:
    """Atomically (re)write `index.json` with the entries sorted by id."""
    index = {"format": CLIP_FOLDER_FORMAT, "fps": FPS, "sample_rate": SAMPLE_RATE,
             "clips": [entries[key] for key in sorted(entries)]}
    path = folder / "index.json"
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".json.tmp", dir=folder)
    with os.fdopen(fd, "w") as handle:
        json.dump(index, handle, indent=1)
    os.replace(tmp, path)
    return path


def write_clip(clip: Clip, folder: Path) -> dict:
    """Write one clip's mp4 (h264 + aac at 16 kHz) and params; returns its index entry."""
    clip_id = clip.spec.clip_id
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    params_path = folder / "params" / f"{clip_id}.safetensors"
    write_state_dict(params_path, clip.params, params_metadata(clip))
    video_path = folder / "clips" / f"{clip_id}.mp4"
    partial = video_path.with_name(f".{clip_id}.partial.mp4")
    try:
        size = clip.spec.size
        with Mp4StreamWriter(partial, FPS, size, size, torch.from_numpy(clip.audio), SAMPLE_RATE,
                             crf=VIDEO_CRF) as writer:
            writer.write(clip.frames)
        os.replace(partial, video_path)
    finally:
        partial.unlink(missing_ok=True)
    return {"id": clip_id, "video": f"clips/{clip_id}.mp4", "params": f"params/{clip_id}.safetensors",
            "split": clip.spec.split, "domain": clip.spec.domain,
            "identity": f"synthtalk-{clip.metadata['identity_id']}", "voice": clip.metadata["voice"],
            "frames": int(clip.frames.shape[0]), "seconds": clip.seconds}


def dataset_specs(clips: int, size: int, domain: str, seed: int, split: str,
                  seconds: float | None) -> list[ClipSpec]:
    """The specs of a data set: clip k has seed `seed + k`."""
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise ValueError(f"expected clips >= 1, got {clips!r}")
    return [ClipSpec(seed=seed + k, domain=domain, size=size, split=split, seconds=seconds) for k in range(clips)]


def write_dataset(out: str | os.PathLike, clips: int, size: int = 128, domain: str = "calm", seed: int = 0,
                  split: str = "train", seconds: float | None = None, progress: bool = True) -> Path:
    """Render and write `clips` clips into `out` (created if needed), skipping clips already finished there.

    Returns the path of `index.json`. Several calls (other domains, splits or seeds) add to the same index.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    entries = read_index(folder)
    specs = dataset_specs(clips, size, domain, seed, split, seconds)
    bar = tqdm(total=len(specs), unit="clip", desc=f"synthtalk {domain}/{split}", disable=not progress)
    for spec in specs:
        done = entries.get(spec.clip_id)
        if done is not None and (folder / done["video"]).is_file() and (folder / done["params"]).is_file():
            bar.update(1)
            continue
        entries[spec.clip_id] = write_clip(render_clip(spec), folder)
        write_index(folder, entries)
        bar.set_postfix(voice=entries[spec.clip_id]["voice"])
        bar.update(1)
    bar.close()
    return write_index(folder, entries)

"""The sync expert's recipe: measure a clip folder, train on its `train` split, score its `heldout` split, write the
weights (safetensors) and a JSON manifest (command, data, seed, wall time, held-out scores, file hash).

Held-out scores here use the cached instrument outputs: in sync, audio delayed by 5 frames (the offset must read
+5), another clip's audio, and a frozen mouth (frame 0's crop repeated). `controls.py` runs the full controls.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..data.clip_folder import scan_clip_folder
from .measure_cache import ClipFeatures, clip_features
from .report import write_json
from .sync_expert import SyncExpert, SyncExpertConfig, save_sync_expert
from .sync_metrics import expert_embeddings
from .sync_protocol import embedding_sync_scores
from .train_sync import SyncTrainingConfig, train_sync_expert

SHIFT_FRAMES = 5


def _delay(windows: torch.Tensor, frames: int) -> torch.Tensor:
    """Audio windows `[T, ...]` of the sound delayed by `frames` (the first window repeated in front)."""
    return torch.cat([windows[:1].expand(frames, *windows.shape[1:]), windows[:-frames]])


def _scores(model: SyncExpert, crops: torch.Tensor, windows: torch.Tensor):
    return embedding_sync_scores(*expert_embeddings(model, crops, windows))


def heldout_sync_scores(model: SyncExpert, clips: list[ClipFeatures]) -> dict[str, float]:
    """Mean Sync-C of held-out clips in sync / shifted / shuffled / frozen, and offset accuracies (within 1 frame)."""
    rows = []
    for index, clip in enumerate(clips):
        other = clips[(index + 1) % len(clips)]
        frames = min(len(clip.crops), len(other.crops))
        good = _scores(model, clip.crops, clip.audio_windows)
        shifted = _scores(model, clip.crops, _delay(clip.audio_windows, SHIFT_FRAMES))
        shuffled = _scores(model, clip.crops[:frames], other.audio_windows[:frames])
        frozen = _scores(model, clip.crops[:1].expand_as(clip.crops), clip.audio_windows)
        rows.append([good.confidence, shifted.confidence, shuffled.confidence, frozen.confidence,
                     abs(good.offset) <= 1, abs(shifted.offset - SHIFT_FRAMES) <= 1, good.min_distance])
    values = np.mean(np.array(rows, dtype=np.float64), axis=0)
    names = ("sync_c_ground_truth", "sync_c_shifted_5", "sync_c_shuffled_audio", "sync_c_frozen_mouth",
             "offset_accuracy_ground_truth", "offset_accuracy_shifted_5", "sync_d_ground_truth")
    return {name: round(float(v), 4) for name, v in zip(names, values)} | {"heldout_clips": len(clips)}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train_and_save(data: str | Path, out: str | Path, cfg: SyncTrainingConfig, cache: str | Path | None = None,
                   command: str = "", model_cfg: SyncExpertConfig = SyncExpertConfig(), progress: bool = True) -> dict:
    """Run the recipe; returns the manifest (also written next to `out` as `<stem>.json`, with `command`, the
    command line that ran it)."""
    start = time.time()
    entries = scan_clip_folder(data)
    cache = Path(cache) if cache is not None else Path(data) / ".metrics_cache"
    train = [clip_features(e, cache) for e in entries if e.split == "train"]
    heldout = [clip_features(e, cache) for e in entries if e.split != "train"]
    if not train:
        raise ValueError(f"{data} has no clips in the 'train' split to train the sync expert on")
    measure_seconds = time.time() - start
    model, info = train_sync_expert(train, cfg, model_cfg, progress=progress)
    path = save_sync_expert(model, out, {"training": asdict(cfg)})
    index = Path(data) / "index.json"
    manifest = {
        "command": command,
        "data": {"folder": str(data), "train_clips": len(train), "heldout_clips": len(heldout),
                 "index_sha256": hashlib.sha256(index.read_bytes()).hexdigest() if index.is_file() else None,
                 "train_ids": [c.entry.id for c in train], "heldout_ids": [c.entry.id for c in heldout]},
        "training": asdict(cfg) | info, "measure_seconds": round(measure_seconds, 1),
        "wall_seconds": round(time.time() - start, 1), "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "git_commit": _git_commit(),
        "heldout": heldout_sync_scores(model, heldout) if len(heldout) >= 2 else None,
        "weights": {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "bytes": path.stat().st_size},
    }
    write_json(path.with_suffix(".json"), manifest)
    return manifest

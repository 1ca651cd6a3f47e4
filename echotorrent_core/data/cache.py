"""Preprocessing cache: VAE latents and audio features of every training window, computed once, read by every stage.

`build_cache(clips_dir, cache_dir, vae, audio_encoder, settings)` turns a clip folder (`clips.py`) into safetensors
shards (one or more per clip, `windows_per_shard` windows each) listed in a JSON index (`cache_index.py`); no pickle.
- Invalidation: the index stores a fingerprint of the VAE encoder's and the audio encoder's weights and configs
  and of the settings; a mismatch deletes the old shards and rebuilds.
- Resume: shards are written atomically and listed in the index only once complete; a build started again skips
  finished clips and, inside a half-finished clip, the windows already stored. Clips that changed on disk are
  redone, clips gone from the folder are dropped. Ctrl-C (or `check_interrupt` raising) at any point is safe.
- Cost: per clip, the two decoding passes of `clips.py`, one audio-encoder pass over the whole clip (the windows'
  feature rows are sliced from it, as inference encodes the whole speech) and one VAE encode per window. On a GPU
  the VAE encode dominates; it runs on the VAE's device and dtype, one window at a time.

Window contract (`CachedWindows[i]`, float32 unless said; F = `window_frames`, S = `size`, z = VAE channels):
  latents           [z, 1 + (F-1)/4, S/8, S/8]  normalised Wan latents of the window's frames (`WanVAE.encode`)
  reference_latent  [z, 1, S/8, S/8]             latents[:, :1], the window's frame 0 encoded alone (causal VAE)
  reference_pixels  [3, S, S] in [-1, 1]         frame 0: the portrait of the streaming layout (sink = latent 0)
  audio_features    [F, layers, dim]             audio-encoder rows under frames 0..F-1 (row i under frame i): the
                                                 sampler's padded feature array for a stream whose portrait is frame 0
  audio             [F / fps * sample_rate]      the window's sound, mono at `sample_rate` (16 kHz)
  pixels            [3, F, S, S] in [-1, 1]      only when built with `keep_pixels` (VAE training, metrics)
  params            {name: tensor}               ground truth of the clip (SynthTalk): per-frame rows under the
                                                 window's frames ([F, ...]), per-clip tensors whole
`CachedWindows` (`cache_dataset.py`) reads the cache; `.info(i)` gives a window's descriptor (clip id, window
number, start frame, crop, split, domain, ...).
Latents and features are stored in `storage_dtype` (float16 / bfloat16 halve the size) and returned as float32.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoints.safetensors_io import write_state_dict
from ..media import normalize_loudness
from .cache_index import (
    drop_clip,
    empty_index,
    file_signature,
    next_shard_path,
    read_index,
    remove_unlisted_files,
    write_index,
)
from .clip_folder import ClipEntry, scan_clip_folder
from .clips import ClipReport, ClipSettings, ClipSkipped, ClipTrack, ClipWindow, crop_windows, open_clip
from .face_boxes import FaceDetector, make_face_detector
from .fingerprint import encoder_fingerprint

LOG = logging.getLogger("echotorrent.data")
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class CacheSettings:
    """What goes into the cache (all part of its fingerprint)."""

    clips: ClipSettings = field(default_factory=ClipSettings)
    storage_dtype: str = "float32"
    keep_pixels: bool = False
    loudness_lufs: float | None = -23.0  # speech normalised before the audio encoder, as at inference
    windows_per_shard: int = 16

    def __post_init__(self) -> None:
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {self.storage_dtype!r}")
        if self.windows_per_shard < 1:
            raise ValueError(f"windows_per_shard must be >= 1, got {self.windows_per_shard}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CacheReport:
    """What a build did: clips used / skipped (with reasons), windows encoded now and reused from before."""

    clips: ClipReport = field(default_factory=ClipReport)
    encoded: int = 0
    reused: int = 0
    rebuilt: bool = False  # the encoders or settings changed: the old cache was discarded

    def summary(self) -> str:
        head = f"{self.encoded} windows encoded, {self.reused} reused" + (" (rebuilt: encoders changed)"
                                                                           if self.rebuilt else "")
        return f"{head}\n{self.clips.summary()}"


def build_cache(clips_dir: str | Path, cache_dir: str | Path, vae: torch.nn.Module, audio_encoder: torch.nn.Module,
                settings: CacheSettings = CacheSettings(), progress: bool = True,
                check_interrupt: Callable[[], None] | None = None,
                detector: FaceDetector | None = None) -> CacheReport:
    """Build or complete the cache of `clips_dir` in `cache_dir` (see the module docstring); returns the report.

    `check_interrupt` is called before every window and may raise to stop (what is written stays valid).
    """
    cache_dir = Path(cache_dir)
    fingerprint = encoder_fingerprint(vae, audio_encoder, settings.to_dict())
    report = CacheReport()
    index = read_index(cache_dir)
    if index is None or index["fingerprint"] != fingerprint:
        if index is not None:
            LOG.warning("cache %s was built with other encoders or settings: rebuilding it", cache_dir)
            report.rebuilt = True
        index = empty_index(fingerprint, settings.to_dict())
    entries = scan_clip_folder(clips_dir)
    if index.get("complete") and _unchanged(index, entries):  # nothing to do: leave every file as it is, so
        builder = _ClipEncoder(cache_dir, index, vae, audio_encoder, settings, report, check_interrupt)
        for entry in entries:  # what is derived from the index (its mtime, e.g. ODE pairs) stays valid
            builder._reuse(entry, index["clips"][entry.id])
        return report
    present = {entry.id for entry in entries}
    for clip_id in [c for c in index["clips"] if c not in present]:
        drop_clip(index, clip_id)
    index["complete"] = False
    write_index(cache_dir, index)
    remove_unlisted_files(cache_dir, index)
    builder = _ClipEncoder(cache_dir, index, vae, audio_encoder, settings, report, check_interrupt)
    detector = detector or make_face_detector(settings.clips.detector)
    bar = tqdm(entries, desc="caching clips", unit="clip", disable=not progress)
    for entry in bar:
        builder.add_clip(entry, detector)
        bar.set_postfix(encoded=report.encoded, reused=report.reused, skipped=len(report.clips.skipped))
    index["complete"] = True
    write_index(cache_dir, index)
    LOG.info("cache %s: %s", cache_dir, report.summary())
    return report


def _unchanged(index: dict, entries: list[ClipEntry]) -> bool:
    """Whether `index` lists exactly these clips, each with its file's current signature."""
    if set(index["clips"]) != {entry.id for entry in entries}:
        return False
    return all(index["clips"][entry.id]["signature"] == (file_signature(entry.video) if entry.video.is_file() else None)
               for entry in entries)


class _ClipEncoder:
    """Encodes one clip's windows into shards and keeps the index up to date."""

    def __init__(self, cache_dir: Path, index: dict, vae: torch.nn.Module, audio_encoder: torch.nn.Module,
                 settings: CacheSettings, report: CacheReport, check_interrupt: Callable[[], None] | None) -> None:
        self.cache_dir, self.index, self.settings, self.report = cache_dir, index, settings, report
        self.vae, self.audio_encoder = vae, audio_encoder
        self.check_interrupt = check_interrupt or (lambda: None)
        self.storage = STORAGE_DTYPES[settings.storage_dtype]

    def add_clip(self, entry: ClipEntry, detector: FaceDetector) -> None:
        signature = file_signature(entry.video) if entry.video.is_file() else None
        state = self.index["clips"].get(entry.id)
        if state is not None and state["signature"] == signature:
            self._reuse(entry, state)
            return
        stored = self._stored_windows(entry.id)
        if state is not None or (stored and self._shard_signature(entry.id) != signature):
            drop_clip(self.index, entry.id)  # the file changed since: start the clip again
            stored = set()
        try:
            track = open_clip(entry, self.settings.clips, detector)
            features = self._audio_features(track)
            buffer: list[ClipWindow] = []
            for window in crop_windows(entry, self.settings.clips, track, frozenset(stored)):
                self.check_interrupt()
                buffer.append(window)
                if len(buffer) == self.settings.windows_per_shard:
                    self._write_shard(entry, signature, buffer, features)
                    buffer = []
            if buffer:
                self._write_shard(entry, signature, buffer, features)
        except ClipSkipped as skipped:
            LOG.warning("skipping %s", skipped)
            drop_clip(self.index, entry.id)
            self.index["clips"][entry.id] = {"status": "skipped", "reason": skipped.reason, "windows": 0,
                                             "signature": signature}
            self.report.clips.skipped[entry.id] = skipped.reason
        else:
            count = len(self._stored_windows(entry.id))
            self.index["clips"][entry.id] = {"status": "done", "reason": None, "windows": count,
                                             "signature": signature}
            self.report.clips.used[entry.id] = count
            self.report.reused += len(stored)
        write_index(self.cache_dir, self.index)

    def _reuse(self, entry: ClipEntry, state: dict) -> None:
        if state["status"] == "skipped":
            self.report.clips.skipped[entry.id] = state["reason"]
        else:
            self.report.clips.used[entry.id] = state["windows"]
            self.report.reused += state["windows"]

    def _stored_windows(self, clip_id: str) -> set[int]:
        return {w["window"] for shard in self.index["shards"] if shard["clip"] == clip_id for w in shard["windows"]}

    def _shard_signature(self, clip_id: str) -> list[int] | None:
        signatures = [shard["signature"] for shard in self.index["shards"] if shard["clip"] == clip_id]
        return signatures[0] if signatures else None

    @torch.no_grad()
    def _audio_features(self, track: ClipTrack) -> torch.Tensor:
        """Audio-encoder features of the whole clip `[frames, layers, dim]` (speech loudness-normalised first)."""
        rate = self.settings.clips.sample_rate
        if self.audio_encoder.cfg.sample_rate != rate:
            raise ValueError(f"the audio encoder takes {self.audio_encoder.cfg.sample_rate} Hz audio but the clip "
                             f"settings resample to {rate} Hz")
        waveform = track.audio
        if self.settings.loudness_lufs is not None:
            waveform = normalize_loudness(waveform, rate, self.settings.loudness_lufs)
        device = next(self.audio_encoder.parameters()).device
        return self.audio_encoder.encode(waveform.to(device), fps=self.settings.clips.fps,
                                         num_frames=track.frames).cpu()

    @torch.no_grad()
    def _window_tensors(self, key: str, window: ClipWindow, features: torch.Tensor) -> dict[str, torch.Tensor]:
        parameter = next(self.vae.parameters())
        video = window.video()[None].to(parameter.device, parameter.dtype)
        latents = self.vae.encode(video)[0].cpu()
        frames = self.settings.clips.window_frames
        tensors = {
            f"{key}.latents": latents.to(self.storage),
            f"{key}.audio_features": features[window.start : window.start + frames].to(self.storage).clone(),
            f"{key}.audio": window.audio,
            f"{key}.reference_pixels": torch.from_numpy(window.frames[0].copy()),
        }
        if self.settings.keep_pixels:
            tensors[f"{key}.pixels"] = torch.from_numpy(window.frames.copy())
        tensors.update({f"{key}.params.{name}": value.clone() for name, value in window.params.items()})
        return tensors

    def _write_shard(self, entry: ClipEntry, signature: list[int] | None, windows: list[ClipWindow],
                     features: torch.Tensor) -> None:
        tensors: dict[str, torch.Tensor] = {}
        descriptors = []
        for number, window in enumerate(windows):
            key = str(number)
            tensors.update(self._window_tensors(key, window, features))
            descriptors.append({"key": key, "clip": entry.id, "window": window.index, "start": window.start,
                                "frames": self.settings.clips.window_frames, "crop": list(window.crop),
                                "face_fraction": window.face_fraction, **entry.labels()})
        name, path = next_shard_path(self.cache_dir, self.index)
        write_state_dict(path, tensors, metadata={"format": self.index["format"], "clip": entry.id})
        self.index["shards"].append({"file": name, "clip": entry.id, "signature": signature, "windows": descriptors})
        self.index["next_shard"] += 1
        write_index(self.cache_dir, self.index)
        self.report.encoded += len(windows)

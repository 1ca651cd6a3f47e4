"""Real-clip data sets: talking-person clips (any container, fps, size, sample rate) -> face-centred training windows.

Each clip is decoded twice, one frame at a time (memory does not grow with its length):
1. audio: the first audio stream, aligned to the video's first frame, mixed to mono and resampled to
   `sample_rate`; the clip is skipped when it has none or it is silent (RMS below `silence_dbfs`);
   video: resampled to `fps` (nearest source frame, `video_resample.py`), the face detector runs on every frame
   (downscaled to at most `detect_max_side` pixels) and the boxes are interpolated and smoothed over time;
2. windows of `window_frames` frames every `window_stride` frames, each with one fixed square crop box (from the
   smoothed track, `crop_scale` times the face) resized to `size` x `size`; windows where the face was found in
   fewer than `min_face_fraction` of the frames are dropped.
A clip that cannot be used (unreadable or corrupt file, no video, no audio, silent, shorter than a window, no face)
raises `ClipSkipped` with the reason; `ClipWindows` logs it, lists it in its `ClipReport` and goes on.
Cost: decoding twice plus one detector pass (4-12 ms per frame on a CPU for mediapipe); windows overlap freely.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from ..checkpoints.errors import CheckpointError
from ..checkpoints.safetensors_io import read_state_dict
from ..media import MediaError, to_mono_resampled
from ..media.audio_decode import decode_audio_stream
from ..media.files import require_media_file
from .clip_folder import ClipEntry, scan_clip_folder
from .face_boxes import FaceDetector, make_face_detector, smooth_track, window_crop
from .video_resample import frames_at_rate

LOG = logging.getLogger("echotorrent.data")


@dataclass(frozen=True)
class ClipSettings:
    """How clips become windows. `window_frames` is `1 + 4k` so a window encodes to `1 + k` Wan latents."""

    fps: float = 25.0
    sample_rate: int = 16000
    size: int = 256  # crop side in pixels (a multiple of 16)
    window_frames: int = 33
    window_stride: int = 33
    crop_scale: float = 1.8  # crop side / face side (mediapipe-scale box, about eyebrows to chin)
    smooth_seconds: float = 0.5
    min_face_fraction: float = 0.8
    silence_dbfs: float = -55.0
    detector: str = "auto"  # "mediapipe", "haar" or "auto" (see face_boxes.py)
    detect_max_side: int = 640

    def __post_init__(self) -> None:
        if self.window_frames < 1 or (self.window_frames - 1) % 4:
            raise ValueError(f"window_frames must be 1 + 4k (Wan VAE latents), got {self.window_frames}")
        if self.window_stride < 1:
            raise ValueError(f"window_stride must be >= 1, got {self.window_stride}")
        if self.size < 16 or self.size % 16:
            raise ValueError(f"size must be a positive multiple of 16, got {self.size}")
        if self.fps <= 0 or self.sample_rate <= 0 or self.crop_scale <= 0 or self.smooth_seconds < 0:
            raise ValueError(f"fps, sample_rate and crop_scale must be positive, smooth_seconds >= 0: {self}")
        if not 0.0 <= self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in [0, 1], got {self.min_face_fraction}")

    @property
    def window_samples(self) -> int:
        """Audio samples under one window."""
        return round(self.window_frames / self.fps * self.sample_rate)


class ClipSkipped(Exception):
    """A clip (or the rest of it) cannot be used; `reason` says why."""

    def __init__(self, clip_id: str, reason: str) -> None:
        super().__init__(f"clip {clip_id}: {reason}")
        self.clip_id = clip_id
        self.reason = reason


@dataclass
class ClipWindow:
    """One training window: frames `[F, S, S, 3]` uint8 RGB, audio `[F / fps * rate]` float32 mono, the crop box
    `(x0, y0, side)` in source pixels, per-frame ground truth sliced to the window (SynthTalk parameters)."""

    entry: ClipEntry
    index: int  # window number within the clip
    start: int  # first frame, at `ClipSettings.fps`
    frames: np.ndarray
    audio: torch.Tensor
    crop: tuple[int, int, int]
    face_fraction: float
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def video(self) -> torch.Tensor:
        """The frames as the VAE takes them: `[3, F, S, S]` float32 in [-1, 1]."""
        return torch.from_numpy(self.frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


@dataclass
class ClipTrack:
    """What the first pass learns about a clip: frame count, face track, audio, window starts."""

    frames: int
    source_frames: int
    width: int
    height: int
    track: np.ndarray  # [frames, 3] smoothed (cx, cy, side)
    found: np.ndarray  # [frames] bool, face detected
    audio: torch.Tensor  # [samples] mono at the settings' rate, sample 0 under frame 0
    starts: list[int]  # windows kept (enough face)
    dropped: int  # windows dropped for too little face
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # the clip's ground truth, whole


def read_clip_audio(entry: ClipEntry, settings: ClipSettings) -> torch.Tensor:
    """The clip's sound `[samples]` mono at `settings.sample_rate`, sample 0 at the first video frame's time."""
    with av.open(str(entry.video)) as container:
        if not container.streams.audio:
            raise ClipSkipped(entry.id, "no audio stream")
        stream = container.streams.audio[0]
        video = container.streams.video[0]
        offset = _start_seconds(video) - _start_seconds(stream)
        waveform, rate = decode_audio_stream(container, stream)
    if waveform.shape[-1] == 0:
        raise ClipSkipped(entry.id, "audio stream holds no samples")
    mono = to_mono_resampled(waveform, rate, settings.sample_rate)
    shift = round(offset * settings.sample_rate)
    if shift > 0:
        mono = mono[shift:]
    elif shift < 0:
        mono = torch.cat([mono.new_zeros(-shift), mono])
    return mono


def _start_seconds(stream: av.stream.Stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _rms_dbfs(audio: torch.Tensor) -> float:
    rms = audio.float().pow(2).mean().sqrt().item() if audio.numel() else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def track_clip(entry: ClipEntry, settings: ClipSettings, detector: FaceDetector) -> ClipTrack:
    """First pass over a clip: audio checks, 25 fps frame count, smoothed face track and the windows to keep."""
    audio = read_clip_audio(entry, settings)
    level = _rms_dbfs(audio)
    if level < settings.silence_dbfs:
        raise ClipSkipped(entry.id, f"silent (audio RMS {level:.1f} dBFS, below {settings.silence_dbfs} dBFS)")
    audio_frames = math.floor(audio.shape[0] * settings.fps / settings.sample_rate)
    boxes, width, height, source_frames = [], 0, 0, 0
    with av.open(str(entry.video)) as container:
        source_frames = container.streams.video[0].frames
        for _, frame in frames_at_rate(container, settings.fps, max_frames=audio_frames):
            width, height = frame.width, frame.height
            scale = min(1.0, settings.detect_max_side / max(width, height))
            small = frame.to_ndarray(format="rgb24", width=max(1, round(width * scale)),
                                     height=max(1, round(height * scale)))
            box = detector.detect(small)
            boxes.append(None if box is None else tuple(v / scale for v in box))
    frames = len(boxes)
    if frames < settings.window_frames:
        raise ClipSkipped(entry.id, f"too short: {frames} frames at {settings.fps:g} fps (with sound), a window "
                                    f"needs {settings.window_frames}")
    found = np.array([box is not None for box in boxes])
    if not found.any():
        raise ClipSkipped(entry.id, "no face found in any frame")
    track = smooth_track(boxes, settings.fps, settings.smooth_seconds)
    starts = list(range(0, frames - settings.window_frames + 1, settings.window_stride))
    kept = [s for s in starts if found[s : s + settings.window_frames].mean() >= settings.min_face_fraction]
    if not kept:
        raise ClipSkipped(entry.id, f"the face is found in fewer than {settings.min_face_fraction:.0%} of the "
                                    "frames of every window")
    return ClipTrack(frames, source_frames or frames, width, height, track, found, audio, kept,
                     len(starts) - len(kept))


@contextmanager
def media_errors_skip(entry: ClipEntry) -> Iterator[None]:
    """Turn PyAV / media / parameter-file errors inside the block into `ClipSkipped` with the decoder's message."""
    try:
        yield
    except (av.FFmpegError, MediaError, CheckpointError, OSError) as error:
        raise ClipSkipped(entry.id, f"unreadable or corrupt ({error})") from error


def open_clip(entry: ClipEntry, settings: ClipSettings, detector: FaceDetector) -> ClipTrack:
    """First pass (`track_clip`) with every media error turned into `ClipSkipped`."""
    with media_errors_skip(entry):
        require_media_file(entry.video, "video")
        with av.open(str(entry.video)) as container:
            if not container.streams.video:
                raise ClipSkipped(entry.id, "no video stream")
        params = read_state_dict(entry.params)[0] if entry.params is not None else {}
        track = track_clip(entry, settings, detector)
        track.params = params
        if track.dropped:
            LOG.info("clip %s: %d windows dropped (face found in too few frames)", entry.id, track.dropped)
        return track


def crop_windows(entry: ClipEntry, settings: ClipSettings, track: ClipTrack,
                 skip_windows: frozenset[int] = frozenset()) -> Iterator[ClipWindow]:
    """Second pass: the clip's windows in order (window numbers in `skip_windows` are neither cropped nor
    yielded). A file that breaks mid-way raises `ClipSkipped`."""
    with media_errors_skip(entry):
        number = {start: n for n, start in enumerate(track.starts)}
        wanted = [s for s in track.starts if number[s] not in skip_windows]
        if not wanted:
            return
        crops = {s: window_crop(track.track, s, settings.window_frames, settings.crop_scale, track.width,
                                track.height) for s in wanted}
        open_windows: dict[int, list[np.ndarray]] = {}
        last = max(wanted) + settings.window_frames
        yielded = 0
        with av.open(str(entry.video)) as container:
            for i, frame in frames_at_rate(container, settings.fps, max_frames=last):
                active = [s for s in wanted if s <= i < s + settings.window_frames]
                if not active:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                for start in active:
                    x0, y0, side = crops[start]
                    crop = cv2.resize(rgb[y0 : y0 + side, x0 : x0 + side], (settings.size, settings.size),
                                      interpolation=cv2.INTER_AREA)
                    open_windows.setdefault(start, []).append(crop)
                    if i == start + settings.window_frames - 1:
                        yielded += 1
                        yield _window(entry, settings, track, number[start], start, crops[start],
                                      np.stack(open_windows.pop(start)))
        if yielded < len(wanted):
            raise ClipSkipped(entry.id, f"the second decoding pass ended before frame {last} (the file changed?)")


def clip_windows(entry: ClipEntry, settings: ClipSettings, detector: FaceDetector | None = None,
                 skip_windows: frozenset[int] = frozenset()) -> Iterator[ClipWindow]:
    """Both passes over one clip: its windows in order. Bad media raises `ClipSkipped` (before the first window,
    or for a file that breaks mid-way), never another error."""
    track = open_clip(entry, settings, detector or make_face_detector(settings.detector))
    yield from crop_windows(entry, settings, track, skip_windows)


def _window(entry: ClipEntry, settings: ClipSettings, track: ClipTrack, index: int, start: int,
            crop: tuple[int, int, int], frames: np.ndarray) -> ClipWindow:
    first = round(start / settings.fps * settings.sample_rate)
    audio = track.audio[first : first + settings.window_samples]
    if audio.shape[0] < settings.window_samples:
        audio = torch.cat([audio, audio.new_zeros(settings.window_samples - audio.shape[0])])
    rows = np.arange(start, start + settings.window_frames)
    sliced = {name: _slice_params(value, rows, entry, settings, track) for name, value in track.params.items()}
    face = float(track.found[start : start + settings.window_frames].mean())
    return ClipWindow(entry, index, start, frames, audio.clone(), crop, face, sliced)


def _slice_params(value: torch.Tensor, rows: np.ndarray, entry: ClipEntry, settings: ClipSettings,
                  track: ClipTrack) -> torch.Tensor:
    """Rows of a per-frame parameter under the window's frames (parameters at the index's fps); other tensors
    (identity vectors, ...) whole."""
    per_frame = entry.frames if entry.frames is not None else track.source_frames
    if value.ndim == 0 or value.shape[0] != per_frame:
        return value
    params_fps = entry.params_fps or settings.fps
    source_rows = np.minimum(np.round(rows * params_fps / settings.fps).astype(np.int64), per_frame - 1)
    return value[torch.from_numpy(source_rows)]


@dataclass
class ClipReport:
    """Which clips gave windows and which were skipped, with the reasons."""

    used: dict[str, int] = field(default_factory=dict)  # clip id -> windows
    skipped: dict[str, str] = field(default_factory=dict)  # clip id -> reason

    def summary(self) -> str:
        lines = [f"{len(self.used)} clips used ({sum(self.used.values())} windows), {len(self.skipped)} skipped"]
        lines += [f"  skipped {clip}: {reason}" for clip, reason in self.skipped.items()]
        return "\n".join(lines)


class ClipWindows(torch.utils.data.IterableDataset):
    """Every window of every usable clip of a folder (`clip_folder.py`), in order; bad clips are logged, listed in
    `report` and skipped. Iterating yields `ClipWindow`s; `split` keeps only clips of that split. Inside a
    DataLoader with workers, each worker reads every `num_workers`-th clip (each window comes once; the report of
    the dataset object in the main process stays empty then)."""

    def __init__(self, folder: str | Path, settings: ClipSettings = ClipSettings(), split: str | None = None) -> None:
        self.settings = settings
        self.entries = [e for e in scan_clip_folder(folder) if split is None or e.split == split]
        self.report = ClipReport()

    def __iter__(self) -> Iterator[ClipWindow]:
        detector = make_face_detector(self.settings.detector)
        worker = torch.utils.data.get_worker_info()
        entries = self.entries if worker is None else self.entries[worker.id :: worker.num_workers]
        for entry in entries:
            yield from self.windows_of(entry, detector)

    def windows_of(self, entry: ClipEntry, detector: FaceDetector,
                   skip_windows: frozenset[int] = frozenset()) -> Iterator[ClipWindow]:
        """One clip's windows; a skipped clip is logged and recorded in `report` instead of raising."""
        count = 0
        try:
            for window in clip_windows(entry, self.settings, detector, skip_windows):
                count += 1
                yield window
        except ClipSkipped as skipped:
            LOG.warning("skipping %s", skipped)
            self.report.skipped[entry.id] = skipped.reason
            return
        self.report.used[entry.id] = count

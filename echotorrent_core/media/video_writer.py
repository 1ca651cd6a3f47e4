"""Incremental mp4 writer (h264 yuv420p + aac) for streamed video chunks.

The file is a fragmented mp4 (`movflags frag_keyframe+delay_moov+default_base_moof`): the first frame of every
`write` is forced to be an IDR keyframe, which closes the previous fragment, and the encoder runs with
`tune=zerolatency` so a chunk's frames leave the encoder during its `write`. A process killed after `write` number
k + 1 has therefore left a decodable file holding at least the first k chunks. `delay_moov` (instead of
`empty_moov`) writes the header once the first fragment is complete, so the AAC priming samples get an edit list and
the audio stays in sync with the video.

The file goes to its final path directly (there is no temporary file to rename) and is created by the first
`write`, after the inputs were validated: a writer that never writes leaves no file; an existing file at the path
is replaced at that moment.
"""

from __future__ import annotations

import math
import numbers
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import torch
import torchaudio.functional as AF

from .errors import MediaError
from .finite import all_finite
from .image_decode import FLOAT_RANGE_TOLERANCE

MOVFLAGS = "frag_keyframe+delay_moov+default_base_moof"
AUDIO_BIT_RATE = 192_000
FALLBACK_AUDIO_RATE = 48_000  # audio at a rate AAC cannot store is resampled to this
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}
MAX_CRF = 51


class Mp4StreamWriter:
    """Append `[T, H, W, 3]` frame chunks to an mp4 while the audio track follows the written video.

    After each `write`, audio up to the video duration written so far is encoded (whole AAC frames); `close`
    writes the remaining audio up to the final video duration (audio longer than the video is cut there; shorter
    audio simply ends). Use as a context manager: the file is closed cleanly even when an exception escapes.
    `audio` is `[S]` or `[C, S]` float (C = 1 or 2) at `audio_rate` Hz; samples are clipped to [-1, 1].
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        width: int,
        height: int,
        audio: torch.Tensor | None = None,
        audio_rate: int | None = None,
        crf: int = 18,
    ) -> None:
        self.path = _check_output_path(path)
        self.fps = _check_fps(fps)
        self.width, self.height = _check_even_size(width, height)
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= MAX_CRF:
            raise ValueError(f"expected crf as an int in [0, {MAX_CRF}] (lower is better quality), got {crf!r}")
        self.crf = crf
        self._audio, self.audio_rate = _prepare_audio(audio, audio_rate)
        self._frames_written = 0
        self._audio_samples_written = 0
        self._container: av.container.OutputContainer | None = None
        self._video_stream: av.video.stream.VideoStream | None = None
        self._audio_stream: av.audio.stream.AudioStream | None = None
        self._closed = False

    @property
    def frames_written(self) -> int:
        """Video frames passed to `write` so far."""
        return self._frames_written

    def __enter__(self) -> "Mp4StreamWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append one chunk: `[T, H, W, 3]` uint8, or float in [0, 1] (torch or numpy); its first frame is a keyframe."""
        if self._closed:
            raise RuntimeError(f"Mp4StreamWriter for {self.path} is closed; cannot write more frames")
        pixels = _frames_to_uint8(frames, self.height, self.width)
        if self._container is None:
            self._open()
        assert self._video_stream is not None
        for index, image in enumerate(pixels):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = self._frames_written
            frame.time_base = 1 / self.fps
            if index == 0:
                frame.pict_type = av.video.frame.PictureType.I
            self._mux(self._video_stream.encode(frame))
            self._frames_written += 1
        self._write_audio(self._audio_samples_for_video(), final=False)

    def close(self) -> None:
        """Finish the audio up to the video duration, flush both encoders and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        try:
            self._write_audio(self._audio_samples_for_video(), final=True)
            assert self._video_stream is not None
            self._mux(self._video_stream.encode(None))
            if self._audio_stream is not None:
                self._mux(self._audio_stream.encode(None))
        finally:
            self._container.close()

    def _open(self) -> None:
        container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"})
        try:
            video = container.add_stream(
                "libx264", rate=self.fps, options={"crf": str(self.crf), "tune": "zerolatency", "forced-idr": "1"}
            )
            video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
            video.codec_context.time_base = 1 / self.fps
            if self._audio is not None:
                audio = container.add_stream("aac", rate=self.audio_rate)
                audio.layout = AUDIO_LAYOUTS[self._audio.shape[0]]
                audio.bit_rate = AUDIO_BIT_RATE
                audio.codec_context.time_base = Fraction(1, self.audio_rate)
                self._audio_stream = audio
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        self._container, self._video_stream = container, video

    def _audio_samples_for_video(self) -> int:
        """Audio samples that the video written so far covers (capped at the audio length)."""
        if self._audio is None:
            return 0
        covered = math.floor(self._frames_written * self.audio_rate / self.fps)
        return min(covered, self._audio.shape[1])

    def _write_audio(self, end: int, final: bool) -> None:
        """Encode audio samples up to `end`: whole AAC frames only, plus the short remainder when `final`."""
        if self._audio_stream is None or self._audio is None:
            return
        frame_size = self._audio_stream.codec_context.frame_size
        layout = AUDIO_LAYOUTS[self._audio.shape[0]]
        while end - self._audio_samples_written >= frame_size or (final and end > self._audio_samples_written):
            stop = min(self._audio_samples_written + frame_size, end)
            block = np.ascontiguousarray(np.clip(self._audio[:, self._audio_samples_written : stop], -1.0, 1.0))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = self.audio_rate
            frame.pts = self._audio_samples_written
            frame.time_base = Fraction(1, self.audio_rate)
            self._mux(self._audio_stream.encode(frame))
            self._audio_samples_written = stop

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        for packet in packets:
            self._container.mux(packet)


def _check_output_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the output path as a str or PathLike, got {type(path).__name__}")
    resolved = Path(path).expanduser()
    if not resolved.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {resolved.parent}")
    if resolved.is_dir():
        raise MediaError(f"output path is a directory, expected an mp4 file path: {resolved}")
    return resolved


def _check_fps(fps: float | Fraction) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"expected fps as a positive finite number, got {fps!r}")
    return Fraction(str(fps)).limit_denominator(1_000_000)


def _check_even_size(width: int, height: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 2 != 0:
            raise MediaError(f"video {name} must be a positive even int (h264 yuv420p), got {value!r}")
    return width, height


def _prepare_audio(audio: torch.Tensor | None, audio_rate: int | None) -> tuple[np.ndarray | None, int | None]:
    """Validate the soundtrack; returns (`[C, S]` float32 at a rate AAC supports, that rate): a view of `audio`
    when it is float32 on the CPU at such a rate (not copied; samples are clipped to [-1, 1] when encoded)."""
    if audio is None:
        if audio_rate is not None:
            raise ValueError("audio_rate was given without audio; pass both or neither")
        return None, None
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"expected audio as a torch.Tensor, got {type(audio).__name__}")
    if isinstance(audio_rate, bool) or not isinstance(audio_rate, int) or audio_rate <= 0:
        raise ValueError(f"expected audio_rate as a positive int (Hz) with the audio, got {audio_rate!r}")
    shape = tuple(audio.shape)
    channels = audio.unsqueeze(0) if audio.ndim == 1 else audio
    if channels.ndim != 2 or channels.shape[0] not in AUDIO_LAYOUTS or channels.shape[1] == 0:
        raise MediaError(f"expected audio shaped [S] or [C, S] with C = 1 or 2 and S > 0, got shape {shape}")
    if not channels.is_floating_point():
        raise MediaError(f"expected floating point audio samples, got dtype {audio.dtype}")
    channels = channels.detach().cpu().float()
    if not all_finite(channels):  # in spans: isfinite of a whole long track makes copies larger than the track
        raise MediaError("audio contains NaN or infinite samples")
    rate = audio_rate
    if audio_rate not in av.codec.Codec("aac", "w").audio_rates:
        channels = AF.resample(channels, orig_freq=audio_rate, new_freq=FALLBACK_AUDIO_RATE)
        rate = FALLBACK_AUDIO_RATE
    return channels.numpy(), rate  # float32 CPU audio is read in place, no copy; clipped per AAC frame


def _frames_to_uint8(frames: torch.Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """`[T, H, W, 3]` uint8 or float in [0, 1] -> contiguous uint8 numpy `[T, H, W, 3]`."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"expected frames as a torch tensor or numpy array, got {type(frames).__name__}")
    expected = f"[T, {height}, {width}, 3] with T >= 1"
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (height, width, 3) or frames.shape[0] == 0:
        raise MediaError(f"expected frames shaped {expected}, got shape {tuple(frames.shape)}")
    frames = frames.detach().cpu()
    if frames.dtype == torch.uint8:
        return np.ascontiguousarray(frames.numpy())
    if not frames.is_floating_point():
        raise MediaError(f"expected uint8 frames or float frames in [0, 1], got dtype {frames.dtype}")
    values = frames.float()
    if not torch.isfinite(values).all():
        raise MediaError("frames contain NaN or infinite values")
    low, high = values.min().item(), values.max().item()
    if low < -FLOAT_RANGE_TOLERANCE or high > 1.0 + FLOAT_RANGE_TOLERANCE:
        raise MediaError(f"expected float frames in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return (values.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()

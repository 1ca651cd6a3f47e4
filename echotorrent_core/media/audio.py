"""Speech audio loading: any file or in-memory waveform -> mono float32 `[S]` at the rate a model needs."""

from __future__ import annotations

import math
import numbers
import os
from fractions import Fraction

import av
import torch
import torchaudio.functional as AF

from .audio_decode import decode_audio_stream
from .errors import AudioTooShortError, MediaError
from .finite import all_finite
from .files import require_media_file
from .loudness import integrated_loudness

# Largest gain `normalize_loudness` applies: lifts speech at -53 LUFS to -23 LUFS without blowing up near-silence.
MAX_LOUDNESS_GAIN_DB = 30.0
LOUDNESS_GATE_SECONDS = 0.4  # BS.1770 gating block: shorter audio cannot be measured
LOUDNESS_MAX_CHANNELS = 5  # channel weights defined by BS.1770 as implemented in torchaudio


def load_audio(path: str | os.PathLike[str], target_rate: int, min_seconds: float | None = None) -> torch.Tensor:
    """Decode the first audio stream of a file (wav, flac, mp3, ogg, m4a, a video's soundtrack, ...).

    Returns mono `[S]` float32 at `target_rate`: channels are averaged, then resampled with
    `torchaudio.functional.resample`. Raises `FileNotFoundError` for a missing file, `MediaError` for an empty,
    corrupt or non-audio file, audio with no samples or with NaN / infinite samples, and `AudioTooShortError`
    when `min_seconds` is given and the audio is shorter.
    """
    _check_rate("target_rate", target_rate)
    waveform, rate = load_audio_channels(path)
    return _mix_and_resample(waveform, rate, target_rate, min_seconds, f"audio file {path}")


def load_audio_channels(path: str | os.PathLike[str]) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream as it is: (`[C, S]` float32 at the file's rate, rate in Hz).

    For muxing the original sound into the output video. Same errors as `load_audio`, except that emptiness and
    NaN checks are left to the caller's `load_audio` / `to_mono_resampled`.
    """
    resolved = require_media_file(path, "audio")
    try:
        with av.open(str(resolved)) as container:
            if not container.streams.audio:
                raise MediaError(f"file has no audio stream: {resolved}")
            return decode_audio_stream(container, container.streams.audio[0])
    except av.FFmpegError as error:
        raise MediaError(f"could not decode audio file {resolved}: corrupt or not audio ({error})") from error


def to_mono_resampled(
    waveform: torch.Tensor, rate: int, target_rate: int, min_seconds: float | None = None
) -> torch.Tensor:
    """In-memory audio `[S]`, `[C, S]` or a batch of one `[1, C, S]` (ComfyUI AUDIO) -> mono `[S]` float32 at
    `target_rate` (channels averaged, then resampled). Same errors as `load_audio`. Mono float32 CPU audio already
    at `target_rate` comes back as a view of the input (no copy of a long track): do not modify it in place."""
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"expected the waveform as a torch.Tensor, got {type(waveform).__name__}")
    _check_rate("rate", rate)
    _check_rate("target_rate", target_rate)
    shape = tuple(waveform.shape)
    if waveform.ndim == 3:
        if shape[0] != 1:
            raise MediaError(f"expected a single waveform (batch size 1), got a batch of {shape[0]} {shape}")
        waveform = waveform[0]
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.ndim != 2:
        raise MediaError(f"expected a waveform shaped [S], [C, S] or [1, C, S], got shape {shape}")
    if not waveform.is_floating_point():
        raise MediaError(f"expected a floating point waveform, got dtype {waveform.dtype}")
    return _mix_and_resample(waveform.detach().cpu().float(), rate, target_rate, min_seconds, "audio")


def normalize_loudness(
    waveform: torch.Tensor, rate: int, target_lufs: float = -23.0, max_gain_db: float = MAX_LOUDNESS_GAIN_DB
) -> torch.Tensor:
    """Scale `[S]` or `[C, S]` audio so its integrated loudness (ITU-R BS.1770, as `torchaudio.functional.loudness`,
    measured in constant memory by `loudness.integrated_loudness`) becomes `target_lufs`; same shape and dtype.

    The gain is clipped to at most `max_gain_db` (attenuation is not limited). Audio that cannot be measured is
    returned unchanged: silence, audio quieter than the -70 LUFS absolute gate, or audio shorter than one 0.4 s
    gating block. Peaks are not limited, so loud targets may push samples beyond [-1, 1].
    """
    _check_rate("rate", rate)
    if waveform.ndim not in (1, 2) or waveform.shape[-1] == 0:
        raise MediaError(f"expected a non-empty waveform shaped [S] or [C, S], got shape {tuple(waveform.shape)}")
    if not waveform.is_floating_point() or not torch.isfinite(waveform).all():
        raise MediaError(f"expected finite floating point audio, got dtype {waveform.dtype} or NaN / infinite samples")
    channels = waveform if waveform.ndim == 2 else waveform.unsqueeze(0)
    if channels.shape[0] > LOUDNESS_MAX_CHANNELS:
        raise MediaError(
            f"loudness is measured for at most {LOUDNESS_MAX_CHANNELS} channels, got {channels.shape[0]}; mix down first"
        )
    gain = loudness_gain(channels, rate, target_lufs, max_gain_db)
    return waveform if gain is None else waveform * gain


def loudness_gain(
    channels: torch.Tensor, rate: int, target_lufs: float = -23.0, max_gain_db: float = MAX_LOUDNESS_GAIN_DB
) -> float | None:
    """The linear factor that `normalize_loudness` multiplies `[C, S]` audio by, or None where it leaves the audio
    unchanged. Measured in constant memory; `AudioEncoder.encode(gain=...)` applies it without copying the track."""
    if channels.shape[-1] < round(LOUDNESS_GATE_SECONDS * rate) or not bool(channels.any()):  # silence
        return None
    lufs = integrated_loudness(channels, rate)
    if not math.isfinite(lufs):
        return None
    gain_db = min(target_lufs - lufs, max_gain_db)
    return 10.0 ** (gain_db / 20.0)


def audio_duration_frames(num_samples: int, rate: int, fps: float | Fraction) -> int:
    """Video frames that `num_samples` of audio at `rate` Hz cover at `fps`: floor(num_samples * fps / rate).

    Rounding down keeps every generated frame inside the audio (no frame without sound under it).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"expected num_samples as a non-negative int, got {num_samples!r}")
    _check_rate("rate", rate)
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"expected fps as a positive finite number, got {fps!r}")
    return math.floor(num_samples * Fraction(str(fps)) / rate)


def _mix_and_resample(
    waveform: torch.Tensor, rate: int, target_rate: int, min_seconds: float | None, source: str
) -> torch.Tensor:
    """`[C, S]` float32 -> checked, channel-averaged `[S]` at `target_rate`."""
    if waveform.shape[-1] == 0 or waveform.shape[0] == 0:
        raise MediaError(f"{source} contains no audio samples")
    if not all_finite(waveform):
        bad = int((~torch.isfinite(waveform)).sum())
        raise MediaError(f"{source} contains {bad} NaN or infinite samples of {waveform.numel()}")
    if min_seconds is not None:
        seconds = waveform.shape[-1] / rate
        if seconds < min_seconds:
            raise AudioTooShortError(f"{source} lasts {seconds:.3f} s; at least {min_seconds} s is required")
    mono = waveform[0] if waveform.shape[0] == 1 else waveform.mean(dim=0)  # mono input: a view, not a copy
    if rate == target_rate:
        return mono
    return AF.resample(mono, orig_freq=rate, new_freq=target_rate)


def _check_rate(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected {name} as a positive int (Hz), got {value!r}")

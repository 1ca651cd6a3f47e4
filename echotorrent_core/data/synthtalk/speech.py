"""Speech with phone timing: `Speech(audio float32 [S] at 16 kHz, phones [(phone, start_s, end_s)], text, voice)`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torchaudio.functional as AF

from .phones import SILENCE, VISEME_TARGETS

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class PhoneSegment:
    """One phone (a key of `VISEME_TARGETS`) from `start` to `end` seconds."""

    phone: str
    start: float
    end: float


@dataclass
class Speech:
    """Mono float32 audio `[S]` at `SAMPLE_RATE` and its phones, contiguous and ordered in time."""

    audio: np.ndarray
    phones: list[PhoneSegment]
    text: str = ""
    voice: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 or float samples `[S]` at `rate` -> float32 `[S']` at 16 kHz in [-1, 1]."""
    audio = samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16 else samples.astype(np.float32)
    if rate != SAMPLE_RATE:
        audio = AF.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def segments_from_starts(starts: list[tuple[str, float]], end: float) -> list[PhoneSegment]:
    """[(phone, start)] (each phone lasts until the next starts; the last until `end`) -> merged segments."""
    segments: list[PhoneSegment] = []
    for index, (phone, start) in enumerate(starts):
        stop = starts[index + 1][1] if index + 1 < len(starts) else end
        if stop > start:
            segments.append(PhoneSegment(phone, start, stop))
    return fill_gaps(segments, end)


def fill_gaps(segments: list[PhoneSegment], end: float) -> list[PhoneSegment]:
    """Insert SIL where no phone covers the time in [0, end]; clip to [0, end]; merge adjacent silences."""
    filled: list[PhoneSegment] = []
    cursor = 0.0
    for segment in sorted(segments, key=lambda s: s.start):
        start, stop = max(segment.start, cursor), min(segment.end, end)
        if start > cursor + 1e-6:
            filled.append(PhoneSegment(SILENCE, cursor, start))
        if stop > start:
            filled.append(PhoneSegment(segment.phone, start, stop))
            cursor = stop
    if end > cursor + 1e-6:
        filled.append(PhoneSegment(SILENCE, cursor, end))
    merged: list[PhoneSegment] = []
    for segment in filled:
        if merged and segment.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = PhoneSegment(SILENCE, merged[-1].start, segment.end)
        else:
            merged.append(segment)
    for segment in merged:
        if segment.phone not in VISEME_TARGETS:
            raise ValueError(f"phone {segment.phone!r} is not in the viseme table")
    return merged


def concatenate(parts: list[Speech], pauses: list[float], voice: str) -> Speech:
    """Join utterances with `pauses[i]` seconds of silence before part i; phone times shifted accordingly."""
    audio: list[np.ndarray] = []
    phones: list[PhoneSegment] = []
    offset = 0.0
    for part, pause in zip(parts, pauses, strict=True):
        gap = int(round(pause * SAMPLE_RATE))
        audio.append(np.zeros(gap, np.float32))
        offset += gap / SAMPLE_RATE
        phones.extend(PhoneSegment(p.phone, p.start + offset, p.end + offset) for p in part.phones)
        audio.append(part.audio)
        offset += part.audio.shape[0] / SAMPLE_RATE
    joined = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    text = " ".join(part.text for part in parts)
    return Speech(joined, fill_gaps(phones, joined.shape[0] / SAMPLE_RATE), text, voice)


def fit_length(speech: Speech, seconds: float) -> Speech:
    """Cut or pad (with trailing silence) the speech to exactly `seconds`."""
    samples = int(round(seconds * SAMPLE_RATE))
    audio = speech.audio[:samples]
    if audio.shape[0] < samples:
        audio = np.concatenate([audio, np.zeros(samples - audio.shape[0], np.float32)])
    return Speech(audio, fill_gaps(speech.phones, samples / SAMPLE_RATE), speech.text, speech.voice, speech.notes)

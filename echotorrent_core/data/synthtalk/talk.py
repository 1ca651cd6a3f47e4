"""The soundtrack of a clip: sentences spoken by a voice, a real recording, or singing, cut to a length."""

from __future__ import annotations

import numpy as np

from .recordings import RECORDING_VOICE, librivox_speech, librivox_transcripts
from .singing import SINGERS, sing
from .speech import Speech, concatenate, fit_length
from .text import sentence
from .voices import VOICES, synthesize

MAX_UTTERANCES = 400


def make_speech(voice: str, rng: np.random.Generator, seconds: float, rate: tuple[float, float]) -> Speech:
    """`seconds` of audio (16 kHz) with phones: utterances separated by short pauses, cut (or padded) to length."""
    if voice in SINGERS:
        return fit_length(sing(SINGERS[voice], rng, seconds), seconds)
    parts: list[Speech] = []
    pauses: list[float] = []
    total = 0.0
    stems = sorted(librivox_transcripts()) if voice == RECORDING_VOICE else []
    order = rng.permutation(len(stems)) if stems else None
    while total < seconds and len(parts) < MAX_UTTERANCES:
        pause = float(rng.uniform(0.2, 0.5) if not parts else rng.uniform(0.25, 0.7))
        if voice == RECORDING_VOICE:
            part = librivox_speech(stems[order[len(parts) % len(stems)]])
        elif voice in VOICES:
            part = synthesize(VOICES[voice], sentence(rng), rate=float(rng.uniform(*rate)),
                              pitch=float(rng.uniform(-0.5, 0.5)))
        else:
            raise ValueError(f"unknown voice {voice!r}; expected one of {sorted(VOICES) + sorted(SINGERS)}")
        parts.append(part)
        pauses.append(pause)
        total += pause + part.seconds
    joined = concatenate(parts, pauses, voice)
    joined.notes = dict(parts[0].notes)
    return fit_length(joined, seconds)

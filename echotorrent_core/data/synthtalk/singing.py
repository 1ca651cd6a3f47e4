"""A formant singing synthesiser (written here): sustained vowels on a melody, with exact phone timing.

Additive source-filter synthesis: harmonics k * f0(t) (f0 from the melody with portamento and vibrato) weighted by
a spectral envelope of three formant resonances (F1..F3 of each vowel, scaled for the voice type) plus a 1/k
glottal roll-off; formants glide between phones like the mouth does. Syllables are optional consonant onsets
(M, N, L, B, D) followed by a held vowel, so the phones are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .speech import SAMPLE_RATE, PhoneSegment, Speech, fill_gaps

FORMANTS = {  # male formant frequencies (Hz), Peterson & Barney style averages
    "AA": (730, 1090, 2440), "AE": (660, 1720, 2410), "EH": (530, 1840, 2480), "IY": (270, 2290, 3010),
    "OW": (570, 840, 2410), "UW": (300, 870, 2240), "AO": (590, 880, 2540), "IH": (390, 1990, 2550),
    "AH": (520, 1190, 2390), "M": (250, 1200, 2200), "N": (250, 1500, 2400), "L": (360, 1000, 2500),
    "B": (200, 900, 2200), "D": (200, 1600, 2600), "SIL": (500, 1500, 2500),
}
SUNG_VOWELS = ("AA", "AE", "EH", "IY", "OW", "UW", "AO", "AH")
ONSETS = (None, "M", "N", "L", "B", "D")
PENTATONIC = np.array([0, 2, 4, 7, 9, 12, 14])
BANDWIDTHS = (90.0, 110.0, 170.0)
GAINS = (1.0, 0.55, 0.3)


@dataclass(frozen=True)
class SingerVoice:
    """A voice type: base pitch (Hz) and formant scale (1.0 male, ~1.18 female)."""

    name: str
    base_hz: float
    formant_scale: float
    heldout: bool = False


SINGERS: dict[str, SingerVoice] = {v.name: v for v in (
    SingerVoice("formant-bass", 98.0, 0.95), SingerVoice("formant-tenor", 147.0, 1.0),
    SingerVoice("formant-alto", 196.0, 1.15), SingerVoice("formant-soprano", 294.0, 1.2, heldout=True),
)}


def sing(voice: SingerVoice, rng: np.random.Generator, seconds: float) -> Speech:
    """About `seconds` of singing (at least one note); returns audio and its exact phones."""
    phones: list[PhoneSegment] = []
    notes: list[tuple[float, float, float]] = []  # (start, end, f0)
    cursor = float(rng.uniform(0.2, 0.5))
    degree = int(rng.integers(len(PENTATONIC)))
    while cursor < seconds - 0.3 or not notes:
        onset = ONSETS[rng.integers(len(ONSETS))]
        length = float(rng.uniform(0.4, 1.3))
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(PENTATONIC) - 1))
        f0 = voice.base_hz * 2 ** (PENTATONIC[degree] / 12)
        if onset is not None:
            duration = 0.07 if onset in ("B", "D") else 0.12
            phones.append(PhoneSegment(onset, cursor, cursor + duration))
            cursor += duration
        phones.append(PhoneSegment(SUNG_VOWELS[rng.integers(len(SUNG_VOWELS))], cursor, cursor + length))
        notes.append((cursor - (duration if onset else 0.0), cursor + length, f0))
        cursor += length + (float(rng.uniform(0.05, 0.4)) if rng.random() < 0.5 else 0.0)
    audio = _render(voice, phones, notes, cursor + 0.3, rng)
    return Speech(audio, fill_gaps(phones, audio.shape[0] / SAMPLE_RATE), "", voice.name, {"timing": "exact (formant synthesiser)"})


def _track(times: np.ndarray, segments: list[tuple[float, float, np.ndarray]], default: np.ndarray,
           smooth_s: float) -> np.ndarray:
    """Piecewise-constant values over time, `[S, D]`, smoothed with a moving average of `smooth_s`."""
    values = np.tile(default, (times.shape[0], 1)).astype(np.float64)
    for start, end, value in segments:
        values[(times >= start) & (times < end)] = value
    width = max(1, int(smooth_s * SAMPLE_RATE))
    kernel = np.ones(width) / width
    padded = np.pad(values, ((width // 2, width - width // 2 - 1), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(values.shape[1])], 1)


def _render(voice: SingerVoice, phones: list[PhoneSegment], notes: list[tuple[float, float, float]],
            total: float, rng: np.random.Generator) -> np.ndarray:
    samples = int(round(total * SAMPLE_RATE))
    times = np.arange(samples) / SAMPLE_RATE
    formants = _track(times, [(p.start, p.end, np.array(FORMANTS[p.phone], float)) for p in phones],
                      np.array(FORMANTS["SIL"], float), 0.04) * voice.formant_scale
    closure = {"B", "D", "SIL"}
    loudness = _track(times, [(p.start, p.end, np.array([0.05 if p.phone in closure else
                                                         0.35 if p.phone in ("M", "N") else 1.0]))
                              for p in phones], np.zeros(1), 0.03)[:, 0]
    f0 = _track(times, [(s, e, np.array([f])) for s, e, f in notes], np.array([notes[0][2]]), 0.08)[:, 0]
    vibrato = 1 + 0.018 * np.sin(2 * np.pi * float(rng.uniform(4.8, 6.2)) * times) * np.clip(times % 1.0 * 2, 0, 1)
    f0 = f0 * vibrato
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    audio = np.zeros(samples)
    for k in range(1, int(7000 // voice.base_hz)):
        freq = k * f0
        envelope = sum(g / (1 + ((freq - formants[:, i]) / BANDWIDTHS[i]) ** 2) for i, g in enumerate(GAINS))
        audio += (envelope + 0.02) / k ** 0.7 * (freq < 7500) * np.sin(k * phase)
    audio *= loudness
    audio += rng.normal(0, 0.004, samples) * loudness
    peak = np.abs(audio).max()
    return (0.6 * audio / peak if peak > 0 else audio).astype(np.float32)

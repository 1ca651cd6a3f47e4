"""SynthTalk domains: distinct speaking styles (preferences for multi-teacher training), each with its own split.

- `calm`: articulate read speech, slow small head motion, neutral face.
- `expressive`: faster, exaggerated articulation, large head motion and nods, smiles and raised brows.
- `singing`: sustained vowels on melodies (formant synthesiser), swaying with the phrase.
- `long`: calm speech of 60-75 s for drift evaluation.
Held-out clips use held-out identities and draw half of their voices from the held-out voices (flite awb,
espeak RP f4, the formant soprano, real LibriVox recordings), which training clips never use.
"""

from __future__ import annotations

from dataclasses import dataclass

from .motion import MotionStyle
from .recordings import RECORDING_VOICE
from .singing import SINGERS
from .voices import VOICES


@dataclass(frozen=True)
class Domain:
    name: str
    seconds: tuple[float, float]  # clip length range when no --seconds is given
    rate: tuple[float, float]  # speaking-rate factor range
    articulation: float
    motion: MotionStyle
    train_voices: tuple[str, ...]
    heldout_voices: tuple[str, ...]


_SPEECH_TRAIN = tuple(name for name, v in VOICES.items() if not v.heldout)
_SPEECH_HELDOUT = tuple(name for name, v in VOICES.items() if v.heldout) + (RECORDING_VOICE,)
_CALM_MOTION = MotionStyle(sway=0.05, nod=0.04, shift=0.01, speed=0.6, nod_rate=0.3, blink_rate=0.25,
                           expression=0.15, light=0.03)

DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("calm", (3.0, 6.0), (0.85, 1.0), 1.0, _CALM_MOTION, _SPEECH_TRAIN, _SPEECH_HELDOUT),
    Domain("expressive", (3.0, 6.0), (1.0, 1.2), 1.2,
           MotionStyle(sway=0.2, nod=0.12, shift=0.035, speed=1.6, nod_rate=0.9, blink_rate=0.4, expression=0.7,
                       light=0.1), _SPEECH_TRAIN, _SPEECH_HELDOUT),
    Domain("singing", (4.0, 8.0), (1.0, 1.0), 1.1,
           MotionStyle(sway=0.1, nod=0.05, shift=0.02, speed=0.8, nod_rate=0.4, blink_rate=0.15, expression=0.4,
                       light=0.05),
           tuple(n for n, v in SINGERS.items() if not v.heldout), tuple(n for n, v in SINGERS.items() if v.heldout)),
    Domain("long", (60.0, 75.0), (0.85, 1.05), 1.0, _CALM_MOTION, _SPEECH_TRAIN, _SPEECH_HELDOUT),
)}


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise ValueError(f"unknown SynthTalk domain {name!r}; expected one of {sorted(DOMAINS)}")
    return DOMAINS[name]

"""One SynthTalk clip from a `ClipSpec`: identity, voice, speech, mouth / motion tracks, rendered frames."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from .domains import get_domain
from .face import FaceRenderer, FrameState
from .identity import draw_identity_id, identity_record, identity_vector, is_heldout_identity, make_identity
from .motion import motion_tracks
from .phones import PHONE_ID, PHONES
from .speech import SAMPLE_RATE, Speech
from .talk import make_speech
from .visemes import phone_per_frame, viseme_tracks

FPS = 25
SPLITS = ("train", "heldout")
PARAMS_FORMAT = "synthtalk-params/1"


@dataclass(frozen=True)
class ClipSpec:
    """What to render. Unset `identity` / `voice` / `seconds` are drawn from the seed, domain and split."""

    seed: int
    domain: str = "calm"
    size: int = 128
    split: str = "train"
    seconds: float | None = None
    identity: int | None = None
    voice: str | None = None

    @property
    def clip_id(self) -> str:
        return f"{self.domain}-{self.split}-{self.seed:06d}"


@dataclass
class Clip:
    """frames uint8 `[T, H, W, 3]`, audio float32 `[S]` at 16 kHz, params {name: tensor} (see `PARAM_FIELDS`)."""

    spec: ClipSpec
    frames: np.ndarray
    audio: np.ndarray
    params: dict[str, torch.Tensor]
    metadata: dict

    @property
    def seconds(self) -> float:
        return self.frames.shape[0] / FPS


PARAM_FIELDS = {
    "mouth_open": "[T] jaw/lip opening in [0, 1] (inner-mouth height = 0.30 * face half-height * value)",
    "mouth_width": "[T] corner spread in [0, 1]", "mouth_round": "[T] lip rounding in [0, 1]",
    "teeth": "[T] upper-teeth visibility in [0, 1]", "pose": "[T, 3] yaw, pitch, roll (radians)",
    "shift": "[T, 2] head offset (fraction of the image side)", "blink": "[T] 0 open .. 1 closed",
    "smile": "[T] in [0, 1]", "brow": "[T] brow raise in [0, 1]",
    "light": "[T, 3] gain, left-right and top-bottom gradient", "phone": "[T] int64 phone id at each frame centre",
    "phone_segments": "[N, 3] float64 (phone id, start s, end s)", "identity": "[D] float32 identity vector",
}


def _rng(spec: ClipSpec) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(spec.domain.encode()), SPLITS.index(spec.split), spec.seed])


def _check(spec: ClipSpec) -> None:
    if spec.split not in SPLITS:
        raise ValueError(f"expected split 'train' or 'heldout', got {spec.split!r}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise ValueError(f"expected a non-negative int seed, got {spec.seed!r}")
    if not isinstance(spec.size, int) or not 64 <= spec.size <= 256 or spec.size % 2:
        raise ValueError(f"expected an even size in [64, 256], got {spec.size!r}")
    if spec.seconds is not None and not spec.seconds >= 0.2:
        raise ValueError(f"expected seconds >= 0.2, got {spec.seconds!r}")
    if spec.identity is not None and is_heldout_identity(spec.identity) != (spec.split == "heldout"):
        raise ValueError(f"identity {spec.identity} does not belong to the {spec.split} split (held-out ids >= "
                         f"{100_000})")


def choose_voice(spec: ClipSpec, rng: np.random.Generator) -> str:
    domain = get_domain(spec.domain)
    if spec.voice is not None:
        if spec.split == "train" and spec.voice not in domain.train_voices:
            raise ValueError(f"voice {spec.voice!r} is not a training voice of {spec.domain}: {domain.train_voices}")
        return spec.voice
    pool = domain.train_voices
    if spec.split == "heldout" and rng.random() < 0.5:
        pool = domain.heldout_voices
    return pool[int(rng.integers(len(pool)))]


def speech_energy(audio: np.ndarray, frames: int) -> np.ndarray:
    """`[frames]` RMS per video frame, divided by its 95th percentile and clipped to [0, 1]."""
    hop = SAMPLE_RATE // FPS
    usable = audio[: frames * hop].reshape(frames, hop)
    rms = np.sqrt((usable.astype(np.float64) ** 2).mean(axis=1))
    scale = np.percentile(rms, 95) + 1e-8
    return np.clip(rms / scale, 0, 1)


def plan_clip(spec: ClipSpec) -> tuple[Speech, dict[str, np.ndarray], dict]:
    """Speech, per-frame tracks (mouth and motion) and metadata of a clip, without drawing it."""
    _check(spec)
    domain = get_domain(spec.domain)
    rng = _rng(spec)
    identity_id = spec.identity if spec.identity is not None else draw_identity_id(rng, spec.split)
    voice = choose_voice(spec, rng)
    seconds = spec.seconds if spec.seconds is not None else float(rng.uniform(*domain.seconds))
    frames = int(np.floor(seconds * FPS + 1e-9))
    speech = make_speech(voice, rng, frames / FPS, domain.rate)
    tracks = viseme_tracks(speech.phones, frames, FPS, domain.articulation)
    tracks.update(motion_tracks(rng, frames, FPS, domain.motion, speech_energy(speech.audio, frames)))
    tracks["phone"] = phone_per_frame(speech.phones, frames, FPS)
    identity = make_identity(identity_id)
    metadata = {
        "format": PARAMS_FORMAT, "fps": FPS, "sample_rate": SAMPLE_RATE, "spec": asdict(spec),
        "identity_id": identity_id, "identity": identity_record(identity), "voice": voice, "text": speech.text,
        "timing": speech.notes.get("timing", ""), "phones": list(PHONES), "fields": PARAM_FIELDS,
    }
    return speech, tracks, metadata


def frame_states(tracks: dict[str, np.ndarray]) -> list[FrameState]:
    """One `FrameState` per frame from the tracks."""
    return [FrameState(float(tracks["mouth_open"][k]), float(tracks["mouth_width"][k]),
                       float(tracks["mouth_round"][k]), float(tracks["teeth"][k]), *map(float, tracks["pose"][k]),
                       *map(float, tracks["shift"][k]), float(tracks["blink"][k]), float(tracks["smile"][k]),
                       float(tracks["brow"][k]), tuple(map(float, tracks["light"][k])))
            for k in range(tracks["mouth_open"].shape[0])]


def render_clip(spec: ClipSpec, on_frame: Callable[[int, int], None] | None = None) -> Clip:
    """Render a clip (deterministic in `spec`). `on_frame(done, total)` is called after each frame."""
    speech, tracks, metadata = plan_clip(spec)
    renderer = FaceRenderer(make_identity(metadata["identity_id"]), spec.size)
    states = frame_states(tracks)
    frames = np.empty((len(states), spec.size, spec.size, 3), np.uint8)
    for index, state in enumerate(states):
        frames[index] = renderer.render(state)
        if on_frame is not None:
            on_frame(index + 1, len(states))
    segments = np.array([[PHONE_ID[p.phone], p.start, p.end] for p in speech.phones], dtype=np.float64)
    params = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in tracks.items()}
    params["phone_segments"] = torch.from_numpy(segments)
    params["identity"] = torch.from_numpy(identity_vector(make_identity(metadata["identity_id"])))
    audio = speech.audio[: len(states) * SAMPLE_RATE // FPS]
    return Clip(spec, frames, np.ascontiguousarray(audio), params, metadata)


def params_metadata(clip: Clip) -> dict[str, str]:
    """String metadata for the params safetensors file (one JSON entry)."""
    return {"synthtalk": json.dumps(clip.metadata)}

"""SynthTalk identities: face shape, colours, hair, accessories and background, a pure function of an int id.

Held-out rule: identity ids >= `HELDOUT_IDENTITY_START` are held out; training clips draw ids from
[0, `HELDOUT_IDENTITY_START`), held-out clips from [`HELDOUT_IDENTITY_START`, + `HELDOUT_IDENTITY_COUNT`).
`identity_vector(identity)` is the float32 `[IDENTITY_DIM]` summary stored in the params files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

HELDOUT_IDENTITY_START = 100_000
HELDOUT_IDENTITY_COUNT = 1_000
TRAIN_IDENTITY_COUNT = HELDOUT_IDENTITY_START
HAIR_STYLES = ("short", "long", "bun", "bald", "curly", "bob")
BACKGROUNDS = ("gradient", "wall", "bokeh", "studio")
IDENTITY_SALT = 0x5EED_1D


def is_heldout_identity(identity_id: int) -> bool:
    """True for the held-out identities (ids >= HELDOUT_IDENTITY_START)."""
    return identity_id >= HELDOUT_IDENTITY_START


def draw_identity_id(rng: np.random.Generator, split: str) -> int:
    """A random identity id of the split ('train' or 'heldout')."""
    if split == "train":
        return int(rng.integers(0, TRAIN_IDENTITY_COUNT))
    if split == "heldout":
        return int(rng.integers(HELDOUT_IDENTITY_START, HELDOUT_IDENTITY_START + HELDOUT_IDENTITY_COUNT))
    raise ValueError(f"expected split 'train' or 'heldout', got {split!r}")


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person. Lengths are fractions of the image side; colours RGB in [0, 1]."""

    id: int
    face_width: float
    face_height: float
    jaw: float  # 0 round .. 1 square
    chin: float  # 0 broad .. 1 pointed
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: int
    eye_colour: tuple[float, float, float]
    eye_size: float
    eye_spacing: float
    eye_height: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float  # mouth line below face centre
    lip_colour: tuple[float, float, float]
    lip_thickness: float
    glasses: bool
    earrings: bool
    shirt: tuple[float, float, float]
    background: int
    background_colours: tuple[float, float, float, float, float, float]


def _skin(rng: np.random.Generator) -> tuple[float, float, float]:
    light, dark = np.array([0.96, 0.80, 0.69]), np.array([0.36, 0.23, 0.16])
    tone = light + (dark - light) * rng.beta(1.4, 1.8)
    return tuple(np.clip(tone + rng.normal(0, 0.02, 3), 0, 1).round(4))


def _colour(rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> tuple[float, float, float]:
    return tuple(rng.uniform(low, high, 3).round(4))


def make_identity(identity_id: int) -> Identity:
    """The identity with this id (same id -> same identity, on any machine)."""
    if isinstance(identity_id, bool) or not isinstance(identity_id, (int, np.integer)) or identity_id < 0:
        raise ValueError(f"expected a non-negative int identity id, got {identity_id!r}")
    rng = np.random.default_rng([IDENTITY_SALT, int(identity_id)])
    skin = _skin(rng)
    hair_base = np.array([[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.55, 0.38, 0.20], [0.80, 0.66, 0.42],
                          [0.55, 0.20, 0.10], [0.65, 0.65, 0.65]])[rng.integers(6)]
    hair = tuple(np.clip(hair_base + rng.normal(0, 0.03, 3), 0, 1).round(4))
    eye = np.array([[0.30, 0.18, 0.10], [0.20, 0.35, 0.55], [0.30, 0.45, 0.25], [0.45, 0.32, 0.18]])[rng.integers(4)]
    lip = np.clip(np.array(skin) * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02])
                  + rng.normal(0, 0.03, 3), 0, 1)
    background = int(rng.integers(len(BACKGROUNDS)))
    return Identity(
        id=int(identity_id),
        face_width=float(rng.uniform(0.38, 0.46)), face_height=float(rng.uniform(0.52, 0.60)),
        jaw=float(rng.uniform(0, 1)), chin=float(rng.uniform(0, 1)), skin=skin, hair=hair,
        hair_style=int(rng.integers(len(HAIR_STYLES))),
        eye_colour=tuple(np.clip(eye + rng.normal(0, 0.03, 3), 0, 1).round(4)),
        eye_size=float(rng.uniform(0.85, 1.15)), eye_spacing=float(rng.uniform(0.9, 1.1)),
        eye_height=float(rng.uniform(-0.01, 0.01)), brow_thickness=float(rng.uniform(0.7, 1.3)),
        nose_length=float(rng.uniform(0.85, 1.15)), nose_width=float(rng.uniform(0.85, 1.2)),
        mouth_width=float(rng.uniform(0.9, 1.12)), mouth_height=float(rng.uniform(-0.008, 0.008)),
        lip_colour=tuple(lip.round(4)), lip_thickness=float(rng.uniform(0.8, 1.25)),
        glasses=bool(rng.random() < 0.2), earrings=bool(rng.random() < 0.2),
        shirt=_colour(rng, 0.1, 0.9), background=background,
        background_colours=tuple(rng.uniform(0.15, 0.95, 6).round(4)),
    )


def identity_vector(identity: Identity) -> np.ndarray:
    """Float32 `[IDENTITY_DIM]`: every appearance field flattened (colours as 3 values, the id left out)."""
    values: list[float] = []
    for field in fields(Identity):
        if field.name == "id":
            continue
        value = getattr(identity, field.name)
        values.extend(float(v) for v in value) if isinstance(value, tuple) else values.append(float(value))
    return np.asarray(values, dtype=np.float32)


IDENTITY_DIM = int(identity_vector(make_identity(0)).shape[0])


def identity_record(identity: Identity) -> dict:
    """JSON-ready description of the identity (for the params metadata)."""
    record = asdict(identity)
    record["hair_style"] = HAIR_STYLES[identity.hair_style]
    record["background"] = BACKGROUNDS[identity.background]
    return record

"""Remake the example inputs in this folder (see README.md): `.venv/bin/python example_inputs/make_examples.py`.

- `portrait.png`: SynthTalk held-out identity `HELDOUT_IDENTITY` drawn at rest (mouth closed, frontal) at 128 px.
- `speech.wav`: a LibriVox recording from Debian pocketsphinx-testdata, copied as 16 kHz mono PCM.
- `photo.png`: `skimage.data.astronaut()` cropped to the face and scaled to 128 px (the honesty report's real photo).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from echotorrent_core.data.synthtalk.face import FaceRenderer, FrameState
from echotorrent_core.data.synthtalk.identity import HELDOUT_IDENTITY_START, make_identity
from echotorrent_core.data.synthtalk.phones import VISEME_TARGETS

HERE = Path(__file__).resolve().parent
SIZE = 128
HELDOUT_IDENTITY = HELDOUT_IDENTITY_START + 7
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
ASTRONAUT_FACE = (slice(20, 220), slice(140, 340))  # rows, columns of the 512 x 512 image around the face


def rest_state() -> FrameState:
    """Frontal, eyes open, mouth at its silence shape, even light."""
    mouth_open, mouth_width, mouth_round, teeth = VISEME_TARGETS["SIL"]
    return FrameState(mouth_open, mouth_width, mouth_round, teeth, yaw=0.0, pitch=0.0, roll=0.0, shift_x=0.0,
                      shift_y=0.0, blink=0.0, smile=0.2, brow=0.0, light=(1.0, 0.0, 0.0))


def write_portrait(path: Path) -> None:
    Image.fromarray(FaceRenderer(make_identity(HELDOUT_IDENTITY), SIZE).render(rest_state())).save(path)


def write_photo(path: Path) -> None:
    from skimage import data

    face = data.astronaut()[ASTRONAUT_FACE]
    Image.fromarray(np.ascontiguousarray(face)).resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(path)


def write_speech(path: Path) -> None:
    import wave

    with wave.open(str(LIBRIVOX)) as source:
        layout = (source.getframerate(), source.getnchannels(), source.getsampwidth())
    if layout != (16000, 1, 2):
        raise ValueError(f"expected {LIBRIVOX} as 16 kHz mono 16-bit PCM, got (rate, channels, bytes) {layout}")
    shutil.copyfile(LIBRIVOX, path)


if __name__ == "__main__":
    write_portrait(HERE / "portrait.png")
    write_photo(HERE / "photo.png")
    write_speech(HERE / "speech.wav")
    print(f"wrote {HERE}/portrait.png, photo.png, speech.wav")

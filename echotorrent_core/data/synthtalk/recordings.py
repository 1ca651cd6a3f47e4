"""Real read speech: the LibriVox clips (public domain) shipped by Debian's pocketsphinx-testdata, with their
transcripts, force-aligned by pocketsphinx. Used only by held-out clips (speech never heard in training)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ...media import load_audio
from .align import force_align
from .speech import SAMPLE_RATE, Speech

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
RECORDING_VOICE = "librivox"


@lru_cache(maxsize=1)
def librivox_transcripts() -> dict[str, str]:
    """{file stem: transcript} of the installed LibriVox clips; raises naming the Debian package when absent."""
    listing = LIBRIVOX_DIR / "transcription"
    if not listing.is_file():
        raise RuntimeError(f"real recordings are missing: {listing} (Debian package pocketsphinx-testdata)")
    entries = {}
    for line in listing.read_text().splitlines():
        match = re.match(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
        if match:
            entries[match.group(2)] = match.group(1).strip()
    return entries


@lru_cache(maxsize=8)
def librivox_speech(stem: str) -> Speech:
    """One LibriVox clip at 16 kHz with pocketsphinx phone timing."""
    text = librivox_transcripts()[stem]
    audio = load_audio(LIBRIVOX_DIR / f"{stem}.wav", SAMPLE_RATE).numpy()
    return Speech(audio, force_align(audio, text), text, RECORDING_VOICE,
                  {"timing": "pocketsphinx forced alignment", "source": f"LibriVox {stem} (public domain)"})

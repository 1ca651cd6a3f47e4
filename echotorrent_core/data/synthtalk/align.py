"""Forced alignment of English speech to its transcript with pocketsphinx (10 ms frames): phone timing for any
voice or recording whose synthesiser does not report its own.

Every alignment runs on a new decoder whose dictionary holds only the transcript's words (built in ~40 ms from
pocketsphinx's bundled CMU dictionary): a reused decoder carries state from one utterance to the next, so the same
audio would align differently depending on what came before.
"""

from __future__ import annotations

import os
import re
import tempfile
from functools import lru_cache

import numpy as np

from .phones import normalize_arpabet
from .speech import SAMPLE_RATE, PhoneSegment, fill_gaps

FRAME_SECONDS = 0.01


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError as error:
        raise RuntimeError("pocketsphinx is missing: pip install pocketsphinx==5.1.1 (the [data] extra)") from error
    return pocketsphinx


@lru_cache(maxsize=1)
def _pronunciations() -> dict[str, list[str]]:
    """{word: its dictionary lines (alternates `word(2)` included)} of the bundled CMU dictionary."""
    path = os.path.join(_pocketsphinx().get_model_path(), "en-us", "cmudict-en-us.dict")
    entries: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            head = line.split(" ", 1)[0]
            entries.setdefault(re.sub(r"\(\d+\)$", "", head), []).append(line)
    return entries


def alignment_words(text: str) -> list[str]:
    """Lower-case dictionary words of a transcript (punctuation dropped, apostrophes kept)."""
    return re.findall(r"[a-z']+", text.lower())


def unknown_words(text: str) -> list[str]:
    """Words of `text` missing from pocketsphinx's pronunciation dictionary."""
    known = _pronunciations()
    return [word for word in alignment_words(text) if word not in known]


def force_align(audio: np.ndarray, text: str) -> list[PhoneSegment]:
    """Phones of `text` timed on `audio` (float32 `[S]` at 16 kHz); gaps become SIL.

    Raises `ValueError` for words outside the dictionary and `RuntimeError` when the alignment fails.
    """
    missing = unknown_words(text)
    if missing:
        raise ValueError(f"words not in pocketsphinx's dictionary: {missing}")
    words = alignment_words(text)
    known = _pronunciations()
    raw = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
    with tempfile.NamedTemporaryFile("w", suffix=".dict", encoding="utf-8") as dictionary:
        dictionary.writelines(line for word in sorted(set(words)) for line in known[word])
        dictionary.flush()
        decoder = _pocketsphinx().Decoder(samprate=SAMPLE_RATE, bestpath=False, lm=None, dict=dictionary.name,
                                          loglevel="FATAL")
        decoder.set_align_text(" ".join(words))
        try:
            for word_pass in (True, False):  # words first, then phones inside them
                decoder.start_utt()
                decoder.process_raw(raw, full_utt=True)
                decoder.end_utt()
                if word_pass:
                    decoder.set_alignment()
        except RuntimeError as error:
            raise RuntimeError(f"pocketsphinx could not align {text!r}: {error}") from error
        alignment = decoder.get_alignment()
        segments = [PhoneSegment(normalize_arpabet(phone.name), phone.start * FRAME_SECONDS,
                                 (phone.start + phone.duration) * FRAME_SECONDS)
                    for word in alignment for phone in word]
    if not segments:
        raise RuntimeError(f"pocketsphinx could not align {text!r}")
    return fill_gaps(segments, audio.shape[0] / SAMPLE_RATE)

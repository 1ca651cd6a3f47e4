"""Forced alignment of English speech to its transcript with pocketsphinx (10 ms frames): phone timing for any
voice or recording whose synthesiser does not report its own."""

from __future__ import annotations

import re

import numpy as np

from .phones import normalize_arpabet
from .speech import SAMPLE_RATE, PhoneSegment, fill_gaps

FRAME_SECONDS = 0.01
_DECODER: dict = {}


def _decoder():
    if "decoder" not in _DECODER:
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise RuntimeError("pocketsphinx is missing: pip install pocketsphinx==5.1.1 (the [data] extra)") from error
        decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, cmn="batch", loglevel="FATAL")
        _DECODER["decoder"], _DECODER["cmn"], _DECODER["warm"] = decoder, decoder.get_cmn(), False
    return _DECODER["decoder"]


def _align(decoder, audio: np.ndarray, text: str):
    """Two passes (words, then phones inside them); returns the alignment. The cepstral mean is reset first."""
    decoder.set_cmn(_DECODER["cmn"])
    raw = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()
    decoder.set_alignment()
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()
    return decoder.get_alignment()


def alignment_words(text: str) -> list[str]:
    """Lower-case dictionary words of a transcript (punctuation dropped, apostrophes kept)."""
    return re.findall(r"[a-z']+", text.lower())


def unknown_words(text: str) -> list[str]:
    """Words of `text` missing from pocketsphinx's pronunciation dictionary."""
    decoder = _decoder()
    return [word for word in alignment_words(text) if decoder.lookup_word(word) is None]


def force_align(audio: np.ndarray, text: str) -> list[PhoneSegment]:
    """Phones of `text` timed on `audio` (float32 `[S]` at 16 kHz); gaps become SIL.

    Raises `ValueError` for words outside the dictionary and `RuntimeError` when the alignment fails.
    """
    missing = unknown_words(text)
    if missing:
        raise ValueError(f"words not in pocketsphinx's dictionary: {missing}")
    decoder, words = _decoder(), " ".join(alignment_words(text))
    if not _DECODER["warm"]:
        # A new decoder aligns its first utterance slightly differently from every later one (whatever came
        # before); aligning the first request twice keeps every result reproducible.
        _align(decoder, audio, words)
        _DECODER["warm"] = True
    alignment = _align(decoder, audio, words)
    segments = [
        PhoneSegment(normalize_arpabet(phone.name), phone.start * FRAME_SECONDS,
                     (phone.start + phone.duration) * FRAME_SECONDS)
        for word in alignment for phone in word
    ]
    if not segments:
        raise RuntimeError(f"pocketsphinx could not align {text!r}")
    return fill_gaps(segments, audio.shape[0] / SAMPLE_RATE)

"""The audio's expected mouth opening per video frame, from recognised phones (no transcript needed).

pocketsphinx 5.1.1's bundled US-English acoustic model decodes the speech in all-phone mode (a phone n-gram
instead of words: `en-us-phone.lm.bin`), giving ARPAbet phones with 10 ms frame timing for any English-like
speech, read or sung. Each phone maps to a jaw/lip aperture in [0, 1] (`PHONE_APERTURE`: open vowels high,
close vowels lower, bilabials and silence shut; standard articulatory phonetics, values chosen here). The
per-frame aperture is then smoothed with a Gaussian of `COARTICULATION_SIGMA` seconds, since the lips move
continuously between phones. The English phone model does not recognise sung or formant-synthesised vowels, so
the opening is the mean of that aperture and a loudness envelope (log energy of the 300-2000 Hz band per video
frame, scaled between its 5th and 95th percentiles). On held-out SynthTalk (24 clips) the best landmark offset
was within +-1 frame for calm / expressive / singing clips in 100 / 83 / 17 % with phones alone, 83 / 100 / 67 %
with the envelope alone and 92 / 100 / 83 % with the mean. This signal never looks at a video frame.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch
import torchaudio.functional as AF

from ..media import to_mono_resampled

DECODER_RATE = 16_000
PHONE_FRAME_SECONDS = 0.01
COARTICULATION_SIGMA = 0.04  # seconds (one frame at 25 fps)
ENVELOPE_BAND = (800.0, 0.7)  # band-pass centre (Hz) and Q: roughly 300-2000 Hz, where vowel energy lies
ENVELOPE_PERCENTILES = (0.05, 0.95)
PHONE_APERTURE: dict[str, float] = {
    "AA": 1.0, "AE": 0.85, "AH": 0.7, "AO": 0.8, "AW": 0.85, "AY": 0.85, "EH": 0.65, "ER": 0.45, "EY": 0.55,
    "IH": 0.45, "IY": 0.35, "OW": 0.6, "OY": 0.65, "UH": 0.4, "UW": 0.3,
    "B": 0.0, "P": 0.0, "M": 0.0, "F": 0.12, "V": 0.12, "TH": 0.25, "DH": 0.25, "T": 0.3, "D": 0.3, "N": 0.3,
    "L": 0.35, "S": 0.2, "Z": 0.2, "SH": 0.25, "ZH": 0.25, "CH": 0.25, "JH": 0.25, "K": 0.35, "G": 0.35,
    "NG": 0.35, "HH": 0.5, "R": 0.3, "W": 0.15, "Y": 0.3,
}  # anything else (SIL, +NSN+, +SPN+, ...) is a closed mouth

_DECODER: dict = {}
_LOCK = threading.Lock()


def _decoder():
    if "decoder" not in _DECODER:
        from pocketsphinx import Decoder, get_model_path

        model = get_model_path()
        _DECODER["decoder"] = Decoder(hmm=os.path.join(model, "en-us", "en-us"),
                                      allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
                                      lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")
    return _DECODER["decoder"]


def recognise_phones(waveform: torch.Tensor, rate: int) -> list[tuple[str, float, float]]:
    """Mono or multi-channel speech -> [(ARPAbet phone, start s, end s)] from pocketsphinx all-phone decoding."""
    mono = to_mono_resampled(waveform, rate, DECODER_RATE)
    pcm = (mono.clamp(-1, 1).numpy() * 32767).astype(np.int16).tobytes()
    with _LOCK:
        decoder = _decoder()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        segments = [(s.word, s.start_frame * PHONE_FRAME_SECONDS, (s.end_frame + 1) * PHONE_FRAME_SECONDS)
                    for s in decoder.seg()]
    return segments


def phones_to_opening(phones: list[tuple[str, float, float]], frames: int, fps: float) -> torch.Tensor:
    """Phone segments -> smoothed aperture per video frame `[frames]` (frame t sampled at its centre)."""
    fine_rate = 1.0 / PHONE_FRAME_SECONDS
    steps = int(np.ceil(frames / fps * fine_rate)) + 1
    fine = np.zeros(steps)
    for phone, start, end in phones:
        fine[int(round(start * fine_rate)): int(round(end * fine_rate))] = PHONE_APERTURE.get(phone, 0.0)
    sigma = COARTICULATION_SIGMA * fine_rate
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    smooth = np.convolve(np.pad(fine, radius, mode="edge"), kernel / kernel.sum(), mode="valid")
    centres = np.minimum(((np.arange(frames) + 0.5) / fps * fine_rate).astype(int), steps - 1)
    return torch.from_numpy(smooth[centres]).float()


def loudness_envelope(waveform: torch.Tensor, rate: int, frames: int, fps: float) -> torch.Tensor:
    """Log energy of the vowel band per video frame `[frames]`, scaled to [0, 1] between robust percentiles."""
    mono = to_mono_resampled(waveform, rate, DECODER_RATE)
    band = AF.bandpass_biquad(mono, DECODER_RATE, *ENVELOPE_BAND)
    hop = DECODER_RATE / fps
    edges = (torch.arange(frames + 1) * hop).round().long().clamp(max=len(band))
    energy = torch.stack([band[a:b].pow(2).mean() if b > a else band.new_zeros(()) for a, b in zip(edges, edges[1:])])
    energy = torch.log(energy + 1e-8)
    low, high = torch.quantile(energy, torch.tensor(ENVELOPE_PERCENTILES))
    return ((energy - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)


def phone_opening(waveform: torch.Tensor, rate: int, frames: int, fps: float) -> torch.Tensor:
    """Speech `[S]` or `[C, S]` at `rate` -> expected mouth opening per video frame `[frames]` in [0, 1]:
    the mean of the phone aperture and the loudness envelope."""
    aperture = phones_to_opening(recognise_phones(waveform, rate), frames, fps)
    return 0.5 * aperture + 0.5 * loudness_envelope(waveform, rate, frames, fps)

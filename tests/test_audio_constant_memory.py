"""The constant-memory audio path (in-place loudness gain, span-wise wav2vec normalisation) equals the whole-track
formulas it replaced, bit for bit, and does not copy the track."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio.functional as AF

from echotorrent_core.config import PRESETS
from echotorrent_core.media import loudness_gain, normalize_loudness, to_mono_resampled
from echotorrent_core.models.wav2vec import NORMALIZE_EPS, AudioEncoder, normalize_waveform

RATE = 16000


def _speechlike(seconds: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3.0 * t)
    return 0.05 * envelope * torch.randn(t.numel(), generator=generator) + 0.02 * torch.sin(2 * math.pi * 220 * t)


def test_gain_is_the_factor_to_the_target_loudness():
    audio = _speechlike(3.0, 0)
    gain = loudness_gain(audio[None], RATE, -23.0)
    assert gain is not None
    scaled = audio.clone().mul_(gain)
    assert torch.equal(scaled, normalize_loudness(audio, RATE, -23.0))
    assert abs(float(AF.loudness(scaled[None], RATE)) - -23.0) < 0.05  # torchaudio's own meter as reference


def test_gain_cap_and_unmeasurable_audio():
    quiet = _speechlike(3.0, 1) * 0.05  # about -60 LUFS: needs more than the 6 dB cap
    capped = loudness_gain(quiet[None], RATE, -23.0, max_gain_db=6.0)
    assert capped == pytest.approx(10 ** (6.0 / 20))
    assert loudness_gain(torch.zeros(1, RATE), RATE) is None  # silence
    assert loudness_gain(_speechlike(0.3, 2)[None], RATE) is None  # shorter than one gating block
    assert torch.equal(normalize_loudness(torch.zeros(RATE), RATE), torch.zeros(RATE))


def test_span_normalisation_equals_whole_track_normalisation():
    torch.manual_seed(0)
    encoder = AudioEncoder(PRESETS["tiny"].wav2vec).eval()
    waveform = _speechlike(2.5, 3) * 7.0  # not unit variance, not zero mean
    waveform += 0.01
    mean, var = waveform.mean(), waveform.var(unbiased=False)
    whole = (waveform - mean) / torch.sqrt(var + NORMALIZE_EPS)  # the formula the encoder used on the whole track
    for segment, context in ((20.0, 3.0), (0.4, 0.4)):
        spanwise = encoder.encode(waveform, fps=25.0, segment_seconds=segment, context_seconds=context)
        reference = encoder.encode(whole, fps=25.0, normalize=False, segment_seconds=segment, context_seconds=context)
        assert torch.equal(spanwise, reference)


def test_encode_does_not_copy_the_track():
    encoder = AudioEncoder(PRESETS["tiny"].wav2vec).eval()
    waveform = _speechlike(1.0, 4)
    seen: list[int] = []
    original = encoder._encode_span

    def record(samples: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(samples.data_ptr())
        return original(samples, *args)

    encoder._encode_span = record  # type: ignore[method-assign]
    encoder.encode(waveform, fps=25.0)
    assert seen and all(pointer == waveform.data_ptr() for pointer in seen)  # spans are cut from the caller's track


@pytest.mark.parametrize("gain", [0.25, 1.0, 3.7])
def test_gain_folded_into_encode_equals_encoding_the_scaled_track(gain: float):
    torch.manual_seed(1)
    encoder = AudioEncoder(PRESETS["tiny"].wav2vec).eval()
    waveform = _speechlike(2.0, 5)
    scaled = waveform * gain  # what the node used to hand the encoder
    folded = encoder.encode(waveform, fps=25.0, gain=gain)
    reference = encoder.encode(normalize_waveform(scaled), fps=25.0, normalize=False)
    assert (folded - reference).abs().max() <= 1e-5 * reference.abs().max()  # float32 rounding of the constants
    raw = encoder.encode(waveform, fps=25.0, normalize=False, gain=gain)
    assert torch.allclose(raw, encoder.encode(scaled, fps=25.0, normalize=False), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gain"):
        encoder.encode(waveform, fps=25.0, gain=0.0)


def test_mono_at_the_target_rate_is_not_copied():
    track = _speechlike(1.0, 6)[None]
    mono = to_mono_resampled(track[None], RATE, RATE)
    assert mono.data_ptr() == track.data_ptr() and torch.equal(mono, track[0])
    stereo = torch.stack([track[0], -0.5 * track[0]])
    assert torch.equal(to_mono_resampled(stereo, RATE, RATE), stereo.mean(dim=0))

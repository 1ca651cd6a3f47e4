"""Segmented integrated loudness against torchaudio's whole-signal BS.1770 implementation, and its memory."""

from __future__ import annotations

import math
import tracemalloc

import pytest
import torch
import torchaudio.functional as AF

from echotorrent_core.media.loudness import SEGMENT_SAMPLES, integrated_loudness


def _speechlike(channels: int, seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    """Noise with a slow loudness swell and a silent stretch (so both gates drop blocks)."""
    samples = int(seconds * rate)
    noise = torch.randn(channels, samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    envelope = 0.05 * (1 + torch.sin(torch.arange(samples, dtype=torch.float64) / rate * 2 * math.pi * 0.7))
    envelope[samples // 3 : samples // 2] = 1e-5
    return (noise * envelope).float()


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_matches_torchaudio_across_segment_edges(rate: int, channels: int):
    audio = _speechlike(channels, 3.3, rate, seed=rate + channels)
    expected = AF.loudness(audio, rate).item()
    for segment in (977, 5000, SEGMENT_SAMPLES):  # edges inside, between and beyond the gating blocks
        assert abs(integrated_loudness(audio, rate, segment_samples=segment) - expected) < 1e-4


def test_silence_and_sub_gate_audio_are_not_measurable():
    assert math.isnan(integrated_loudness(torch.zeros(1, 16000), 16000))
    assert math.isnan(integrated_loudness(torch.full((1, 16000), 1e-6), 16000))  # below the -70 LUFS gate


def test_memory_does_not_follow_the_audio_length():
    """Ten minutes of 16 kHz speech (38 MB as float32) is measured with a few segments' worth of memory."""
    audio = _speechlike(1, 600.0, 16000)
    tracemalloc.start()
    try:
        integrated_loudness(audio, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    segment_bytes = SEGMENT_SAMPLES * 8
    assert peak < 8 * segment_bytes < audio.numel() * audio.element_size()

"""SyncNet protocol math on hand-made embeddings and signals: distance curve, median - min, argmin, sign."""

import pytest
import torch

from echotorrent_core.metrics.sync_protocol import offset_distance_curve, scores_from_curve, signal_sync_scores, embedding_sync_scores


def test_curve_is_mean_distance_of_valid_pairs():
    video = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    audio = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
    offsets, curve = offset_distance_curve(video, audio, max_offset=1)
    assert offsets.tolist() == [-1, 0, 1]
    # offset k pairs video t with audio t + k
    expected = [
        (abs(1 - 0) + abs(2 - 1) + abs(3 - 2)) / 3,
        (0 + 0 + 0 + 2) / 4,
        (abs(0 - 1) + abs(1 - 2) + abs(2 - 5)) / 3,
    ]
    assert curve.tolist() == pytest.approx(expected)


def test_confidence_is_median_minus_min_and_offset_is_argmin():
    offsets = torch.arange(-2, 3)
    curve = torch.tensor([5.0, 4.0, 9.0, 1.0, 7.0])
    scores = scores_from_curve(offsets, curve)
    assert scores.offset == 1
    assert scores.min_distance == pytest.approx(1.0)
    assert scores.confidence == pytest.approx(5.0 - 1.0)
    assert scores.confidence_at_zero == pytest.approx(5.0 - 9.0)


def test_delayed_audio_gives_positive_offset():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(80, 8, generator=generator)
    delay = 4
    delayed = torch.cat([base[:1].expand(delay, -1), base[:-delay]])  # sound arrives `delay` frames late
    scores = embedding_sync_scores(base, delayed, max_offset=15)
    assert scores.offset == delay
    assert scores.min_distance == pytest.approx(0.0, abs=1e-6)
    assert scores.confidence > 1.0


def test_signal_sync_finds_the_lag_and_a_constant_signal_has_no_confidence():
    t = torch.arange(120, dtype=torch.float32)
    opening = torch.sin(t / 3.0) + 0.5 * torch.sin(t / 1.3)
    lag = 3
    lagged = torch.cat([opening[:1].expand(lag), opening[:-lag]])
    good = signal_sync_scores(opening, lagged)
    assert good.offset == lag
    assert good.min_distance == pytest.approx(0.0, abs=1e-4)
    frozen = signal_sync_scores(torch.full_like(opening, 0.2), opening)
    assert frozen.confidence == pytest.approx(0.0, abs=1e-6)


def test_too_short_or_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="at least 31 frames"):
        embedding_sync_scores(torch.zeros(20, 4), torch.zeros(20, 4), max_offset=15)
    with pytest.raises(ValueError, match="same number of frames"):
        embedding_sync_scores(torch.zeros(40, 4), torch.zeros(41, 4))

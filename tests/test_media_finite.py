"""media.all_finite: the answer of torch.isfinite(x).all() for any shape and position of a bad value, from spans
whose copies stay small; the mp4 writer checks a long soundtrack with it instead of copying it."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.media import MediaError, Mp4StreamWriter
from echotorrent_core.media.finite import FINITE_SPAN_ELEMENTS, all_finite

from allocations import LargestNewStorage


@pytest.mark.parametrize("shape, dim", [((2, 1001), -1), ((1001, 3, 5), 0), ((7,), 0), ((), 0), ((0, 4), 0)])
def test_agrees_with_isfinite_wherever_the_bad_value_is(shape: tuple[int, ...], dim: int) -> None:
    values = torch.randn(shape)
    assert all_finite(values, dim, span_elements=64) and bool(torch.isfinite(values).all())
    for flat in range(0, values.numel(), max(1, values.numel() // 13)):
        for bad in (float("nan"), float("inf"), -float("inf")):
            broken = values.clone()
            broken.view(-1)[flat] = bad
            assert not all_finite(broken, dim, span_elements=64), (flat, bad)


def test_checks_a_long_track_with_copies_of_one_span() -> None:
    track = torch.randn(2, 3_000_000)  # 24 MB, about 3 minutes of 44.1 kHz stereo
    recorder = LargestNewStorage(track)
    with recorder:
        assert all_finite(track)
    assert 0 < recorder.largest <= FINITE_SPAN_ELEMENTS * 4  # one span's float32 copy; isfinite(track) copies 24 MB


def test_the_mp4_writer_takes_a_long_soundtrack_without_copying_it(tmp_path) -> None:
    track = torch.randn(1, 3_000_000).clamp(-1, 1)  # 12 MB: about 3 minutes of 16 kHz mono
    recorder = LargestNewStorage(track)
    with recorder:
        writer = Mp4StreamWriter(tmp_path / "out.mp4", fps=25, width=16, height=16, audio=track, audio_rate=16000)
    assert recorder.largest <= FINITE_SPAN_ELEMENTS * 4
    track[0, 7] = float("nan")
    with pytest.raises(MediaError, match="NaN or infinite"):
        Mp4StreamWriter(tmp_path / "bad.mp4", fps=25, width=16, height=16, audio=track, audio_rate=16000)
    writer.close()

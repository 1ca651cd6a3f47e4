"""Motion-centred training crops (training/stages/motion_crops.py): they find the moving region."""

import pytest
import torch

from echotorrent_core.training.stages.motion_crops import motion_centred_crops


def _window_with_moving_patch(batch: int = 6, frames: int = 9, side: int = 64) -> torch.Tensor:
    """[B, T, 3, S, S] uint8: a still grey frame with an 6 x 6 patch near one corner that flickers over time."""
    video = torch.full((batch, frames, 3, side, side), 100, dtype=torch.uint8)
    for t in range(frames):
        video[:, t, :, 50:56, 4:10] = 30 if t % 2 else 220
    return video


def test_every_motion_crop_holds_the_moving_patch() -> None:
    torch.manual_seed(0)
    video = _window_with_moving_patch()
    crops = motion_centred_crops(video, 16, fraction=1.0)
    assert crops.shape == (6, 9, 3, 16, 16)
    for crop in crops:
        assert (crop != 100).any(dim=(0, 1)).sum() == 36  # the whole 6 x 6 patch lies inside every crop


def test_uniform_crops_mostly_miss_the_patch_and_a_still_window_falls_back() -> None:
    torch.manual_seed(0)
    crops = motion_centred_crops(_window_with_moving_patch(batch=64), 16, fraction=0.0)
    hits = sum(bool((crop != 100).any()) for crop in crops)
    assert hits < 32  # the patch region covers well under half of the uniform positions
    still = torch.full((2, 5, 3, 32, 32), 7, dtype=torch.uint8)
    assert motion_centred_crops(still, 8, fraction=1.0).shape == (2, 5, 3, 8, 8)


def test_bad_arguments_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="fraction"):
        motion_centred_crops(_window_with_moving_patch(), 16, fraction=1.5)
    with pytest.raises(ValueError, match=r"\[B, T, 3, S, S\]"):
        motion_centred_crops(torch.zeros(2, 3, 8, 8), 4, fraction=0.5)

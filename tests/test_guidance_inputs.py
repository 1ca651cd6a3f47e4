"""Guidance inputs from a user interface: phase text, a mask fitted like the portrait, a policy matched to the stream; masks the guidance would ignore."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.guidance import GuidancePolicy
from echotorrent_core.guidance_inputs import fit_region_mask, parse_phases, policy_for_stream
from echotorrent_core.guidance_schedule import DEFAULT_PHASES, GuidancePhase, PhasedSpatiotemporalSchedule


def test_parse_phases_reads_the_default_schedule():
    assert parse_phases("0.5:1.0, 0.75:0.75 ,1.0:0") == DEFAULT_PHASES


def test_parse_phases_single_phase():
    assert parse_phases("1:2.5") == (GuidancePhase(0.0, 1.0, 2.5),)


@pytest.mark.parametrize("text", ["0.5", "0.5:1:2", "half:1", "0.5:1,", ""])
def test_parse_phases_rejects_malformed_entries(text: str):
    with pytest.raises(ValueError, match="is not 'end:scale'"):
        parse_phases(text)


def test_schedule_checks_parsed_phases():
    with pytest.raises(ValueError, match="covering progress 0 to 1"):
        PhasedSpatiotemporalSchedule(phases=parse_phases("0.5:1,0.9:0"))


def test_fit_region_mask_crops_like_the_portrait():
    mask = torch.zeros(20, 40)
    mask[:, :10] = 1.0  # left quarter; cover to 16x16 keeps the centre half of the width
    fitted = fit_region_mask(mask, 16, 16)
    assert fitted.shape == (16, 16)
    assert fitted.min() >= 0 and fitted.max() <= 1
    assert fitted.max() < 0.05  # the marked quarter lies in the cropped-away margin
    mask[:, 18:22] = 1.0  # a centre stripe survives the crop
    assert fit_region_mask(mask, 16, 16)[:, 7:9].min() > 0.9


def test_fit_region_mask_rejects_a_batch():
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        fit_region_mask(torch.zeros(2, 8, 8), 16, 16)


def test_policy_for_stream_follows_the_stream_chunking():
    plain = GuidancePolicy("text_audio_cfg", schedule=PhasedSpatiotemporalSchedule(chunk_frames=3))
    bound = policy_for_stream(plain, chunk_frames=5)
    assert bound.schedule.chunk_frames == 5
    assert (bound.mode, bound.text_scale, bound.audio_scale) == (plain.mode, plain.text_scale, plain.audio_scale)
    assert policy_for_stream(GuidancePolicy("audio_cfg"), chunk_frames=5) == GuidancePolicy("audio_cfg")


@pytest.mark.parametrize("policy", [GuidancePolicy("single", schedule=PhasedSpatiotemporalSchedule()),
                                    GuidancePolicy("audio_cfg")])
def test_mask_that_would_be_ignored_is_an_error(policy: GuidancePolicy):
    with pytest.raises(ValueError, match="acts only through the spatiotemporal schedule"):
        policy.check_region_mask(torch.ones(4, 4), (4, 4))


@pytest.mark.parametrize("value", [2.0, float("nan")])
def test_out_of_range_masks_are_rejected(value: float):
    policy = GuidancePolicy("audio_cfg", schedule=PhasedSpatiotemporalSchedule())
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        policy.check_region_mask(torch.full((4, 4), value), (4, 4))

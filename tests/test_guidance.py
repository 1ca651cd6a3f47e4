import json

import pytest
import torch

from echotorrent_core.guidance import ConditionVariant, GuidanceMode, GuidancePolicy, PassCounter
from echotorrent_core.guidance_schedule import GuidancePhase, PhasedSpatiotemporalSchedule, step_progress

V = ConditionVariant
SHAPE = (2, 4, 3, 5, 6)
FRAMES = torch.arange(3)


def _predictions(seed: int = 0) -> dict[ConditionVariant, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {variant: torch.randn(SHAPE, generator=generator) for variant in V}


def _flat_schedule(**overrides) -> PhasedSpatiotemporalSchedule:
    """A schedule whose weight is the phase scale alone (unit spatial and temporal weights)."""
    unit = dict(outside_weight=1.0, chunk_start_weight=1.0, rollout_end_weight=1.0)
    return PhasedSpatiotemporalSchedule(**{**unit, **overrides})


# --- modes and combination -------------------------------------------------------------------------------


def test_single_mode_returns_full_prediction_with_one_pass():
    policy = GuidancePolicy(GuidanceMode.SINGLE)
    preds = _predictions()
    assert policy.variants_for_step(0, 4) == [V.FULL]
    assert policy.combine({V.FULL: preds[V.FULL]}, 0, 4) is preds[V.FULL]


def test_audio_cfg_matches_hand_formula():
    policy = GuidancePolicy("audio_cfg", audio_scale=3.5)
    preds = _predictions(1)
    expected = preds[V.TEXT_ONLY] + 3.5 * (preds[V.FULL] - preds[V.TEXT_ONLY])
    assert policy.variants_for_step(1, 4) == [V.FULL, V.TEXT_ONLY]
    torch.testing.assert_close(policy.combine(preds, 1, 4), expected)


def test_text_audio_cfg_matches_infinitetalk_formula():
    policy = GuidancePolicy(GuidanceMode.TEXT_AUDIO_CFG)
    assert (policy.text_scale, policy.audio_scale) == (5.0, 4.0)
    preds = _predictions(2)
    e_ta, e_0a, e_00 = preds[V.FULL], preds[V.AUDIO_ONLY], preds[V.NULL]
    expected = e_00 + 5.0 * (e_ta - e_0a) + 4.0 * (e_0a - e_00)
    assert policy.variants_for_step(3, 4) == [V.FULL, V.AUDIO_ONLY, V.NULL]
    torch.testing.assert_close(policy.combine(preds, 3, 4), expected)


def test_combine_keeps_prediction_dtype():
    preds = {variant: tensor.to(torch.bfloat16) for variant, tensor in _predictions(3).items()}
    assert GuidancePolicy("text_audio_cfg").combine(preds, 0, 4).dtype == torch.bfloat16


@pytest.mark.parametrize("mode, passes", [("single", 1), ("audio_cfg", 2), ("text_audio_cfg", 3)])
def test_passes_per_step_without_schedule(mode, passes):
    policy = GuidancePolicy(mode)
    assert [policy.passes_per_step(i, 4) for i in range(4)] == [passes] * 4


def test_unit_audio_scale_needs_one_pass_fewer():
    preds = _predictions(4)
    audio = GuidancePolicy("audio_cfg", audio_scale=1.0)
    assert audio.variants_for_step(0, 4) == [V.FULL]
    torch.testing.assert_close(audio.combine({V.FULL: preds[V.FULL]}, 0, 4), preds[V.FULL])
    both = GuidancePolicy("text_audio_cfg", text_scale=5.0, audio_scale=1.0)
    reduced = both.combine({V.FULL: preds[V.FULL], V.AUDIO_ONLY: preds[V.AUDIO_ONLY]}, 0, 4)
    three_pass = preds[V.NULL] + 5.0 * (preds[V.FULL] - preds[V.AUDIO_ONLY]) + (preds[V.AUDIO_ONLY] - preds[V.NULL])
    torch.testing.assert_close(reduced, three_pass)


def test_scheduled_steps_with_zero_phase_need_fewer_passes():
    schedule = PhasedSpatiotemporalSchedule()
    assert [GuidancePolicy("audio_cfg", schedule=schedule).passes_per_step(i, 4) for i in range(4)] == [2, 2, 2, 1]
    assert [GuidancePolicy("text_audio_cfg", schedule=schedule).passes_per_step(i, 4) for i in range(4)] == [3, 3, 3, 2]
    assert GuidancePolicy("single", schedule=schedule).passes_per_step(0, 4) == 1


def test_scheduled_combine_scales_the_guidance_excess():
    policy = GuidancePolicy("text_audio_cfg", text_scale=2.0, audio_scale=4.0, schedule=_flat_schedule())
    preds = _predictions(5)
    e_ta, e_0a, e_00 = preds[V.FULL], preds[V.AUDIO_ONLY], preds[V.NULL]
    scale = 1 + (4.0 - 1) * 0.75  # step 2 of 4 lies in the 0.75 phase
    expected = e_00 + 2.0 * (e_ta - e_0a) + scale * (e_0a - e_00)
    torch.testing.assert_close(policy.combine(preds, 2, 4, frame_indices=FRAMES), expected)
    last = policy.combine({V.FULL: e_ta, V.AUDIO_ONLY: e_0a}, 3, 4, frame_indices=FRAMES)
    torch.testing.assert_close(last, e_0a + 2.0 * (e_ta - e_0a))


def test_scheduled_combine_applies_spatial_map_per_position():
    mask = torch.zeros(5, 6)
    mask[2:, 3:] = 1.0
    schedule = _flat_schedule(outside_weight=0.0)
    policy = GuidancePolicy("audio_cfg", audio_scale=3.0, schedule=schedule)
    preds = _predictions(6)
    out = policy.combine(preds, 0, 4, frame_indices=FRAMES, region_mask=mask)
    e_ta, e_t0 = preds[V.FULL], preds[V.TEXT_ONLY]
    torch.testing.assert_close(out[..., 2:, 3:], (e_t0 + 3.0 * (e_ta - e_t0))[..., 2:, 3:])
    torch.testing.assert_close(out[..., :2, :], e_ta[..., :2, :])


def test_predict_evaluates_only_needed_variants_and_counts_passes():
    preds = _predictions(7)
    policy = GuidancePolicy("text_audio_cfg", schedule=_flat_schedule())
    counter = PassCounter()
    seen: list[ConditionVariant] = []

    def denoise(variant: ConditionVariant) -> torch.Tensor:
        seen.append(variant)
        return preds[variant]

    counted = counter.wrap(denoise)
    for step in range(4):
        counter.begin_step()
        out = policy.predict(counted, step, 4, frame_indices=FRAMES)
        assert out.shape == SHAPE
    assert counter.per_step == [3, 3, 3, 2] and counter.total == 11
    assert V.TEXT_ONLY not in seen
    counter.reset()
    assert counter.per_step == [] and counter.total == 0


def test_pass_counter_records_batched_passes_and_rejects_misuse():
    counter = PassCounter()
    with pytest.raises(RuntimeError, match="begin_step"):
        counter.record()
    counter.begin_step()
    counter.record(3)
    counter.begin_step()
    counter.record()
    assert counter.per_step == [3, 1]
    with pytest.raises(ValueError, match="at least one pass"):
        counter.record(0)


def test_combine_names_missing_variant():
    preds = _predictions()
    del preds[V.NULL]
    with pytest.raises(ValueError, match="missing \\['none'\\]"):
        GuidancePolicy("text_audio_cfg").combine(preds, 0, 4)


def test_combine_rejects_mismatched_shapes_and_frames():
    preds = _predictions()
    preds[V.TEXT_ONLY] = preds[V.TEXT_ONLY][:, :, :2]
    with pytest.raises(ValueError, match="shape"):
        GuidancePolicy("audio_cfg").combine(preds, 0, 4)
    with pytest.raises(ValueError, match="frame_indices"):
        GuidancePolicy("audio_cfg").combine(_predictions(), 0, 4, frame_indices=torch.arange(2))
    with pytest.raises(ValueError, match="needs the frame_indices"):
        GuidancePolicy("audio_cfg", schedule=PhasedSpatiotemporalSchedule()).combine(_predictions(), 0, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "cfg"}, "unknown guidance mode"),
        ({"text_scale": -1.0}, "non-negative text_scale"),
        ({"audio_scale": float("nan")}, "non-negative audio_scale"),
        ({"schedule": {"phases": []}}, "PhasedSpatiotemporalSchedule"),
    ],
)
def test_policy_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuidancePolicy(**kwargs)


def test_variants_reject_bad_step():
    with pytest.raises(ValueError, match="step_index"):
        GuidancePolicy().variants_for_step(4, 4)


def test_policy_round_trips_through_json():
    policy = GuidancePolicy("text_audio_cfg", 4.5, 2.0, PhasedSpatiotemporalSchedule(phases=[(0, 0.3, 2), (0.3, 1, 0)]))
    restored = GuidancePolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert restored == policy
    assert GuidancePolicy.from_dict(GuidancePolicy().to_dict()) == GuidancePolicy()
    with pytest.raises(ValueError, match="unknown guidance policy fields"):
        GuidancePolicy.from_dict({"mode": "single", "cfg": 1})


def test_condition_variant_flags():
    assert [(v.has_text, v.has_audio) for v in V] == [(True, True), (True, False), (False, True), (False, False)]


# --- the phased spatiotemporal schedule ------------------------------------------------------------------


def test_default_phases_guide_early_and_stop_at_last_step():
    schedule = PhasedSpatiotemporalSchedule()
    assert [schedule.phase_scale_at_step(i, 4) for i in range(4)] == [1.0, 1.0, 0.75, 0.0]
    assert schedule.phase_scale(1.0) == 0.0 and schedule.phase_scale(0.0) == 1.0
    assert step_progress(0, 2) == 0.25


def test_audio_scale_map_shape_and_last_step_zero():
    schedule = PhasedSpatiotemporalSchedule()
    weight = schedule.audio_scale_map(0, 4, torch.arange(6, 9), (7, 10))
    assert weight.shape == (1, 1, 3, 7, 10) and weight.dtype == torch.float32
    assert bool((weight > 0).all())
    assert bool((schedule.audio_scale_map(3, 4, torch.arange(3), (7, 10)) == 0).all())


def test_default_face_prior_is_strong_at_lower_centre_and_weak_at_corners():
    schedule = PhasedSpatiotemporalSchedule(inside_weight=1.0, outside_weight=0.3)
    spatial = schedule.spatial_weight((20, 20))
    assert spatial.shape == (20, 20)
    assert spatial[12, 10] > 0.95 and abs(float(spatial[0, 0]) - 0.3) < 1e-3
    assert spatial[12, 10] > spatial[4, 10]
    assert bool((spatial >= 0.3).all()) and bool((spatial <= 1.0).all())


def test_region_mask_inside_and_outside_weights_at_pixel_resolution():
    schedule = PhasedSpatiotemporalSchedule(inside_weight=2.0, outside_weight=0.5)
    pixel_mask = torch.zeros(40, 48)
    pixel_mask[:20, :24] = 1.0
    spatial = schedule.spatial_weight((5, 6), region_mask=pixel_mask)
    assert spatial.shape == (5, 6)
    assert float(spatial[0, 0]) == pytest.approx(2.0)
    assert float(spatial[4, 5]) == pytest.approx(0.5)
    latent_mask = torch.zeros(5, 6)
    latent_mask[1, 2] = 1.0
    exact = schedule.spatial_weight((5, 6), region_mask=latent_mask)
    assert float(exact[1, 2]) == 2.0 and float(exact.sum()) == pytest.approx(2.0 + 29 * 0.5)


def test_temporal_weight_ramps_in_chunk_and_over_rollout():
    schedule = PhasedSpatiotemporalSchedule(
        chunk_frames=3, chunk_start_weight=0.5, chunk_end_weight=1.0,
        rollout_start_weight=1.0, rollout_end_weight=2.0, rollout_ramp_chunks=4,
    )
    weight = schedule.temporal_weight(torch.tensor([0, 1, 2, 6, 12, 14, 32]))
    torch.testing.assert_close(weight, torch.tensor([0.5, 0.75, 1.0, 0.5 * 1.5, 0.5 * 2.0, 2.0, 2.0]))
    single_frame_chunks = PhasedSpatiotemporalSchedule(chunk_frames=1, rollout_ramp_chunks=0, rollout_end_weight=1.5)
    torch.testing.assert_close(single_frame_chunks.temporal_weight(torch.arange(3)), torch.full((3,), 1.5))


def test_weight_map_is_product_of_factors_and_accepts_per_sample_progress():
    schedule = PhasedSpatiotemporalSchedule()
    frames = torch.tensor([3, 4, 5])
    weight = schedule.weight_map(torch.tensor([0.1, 0.6, 0.9]), frames, (4, 5))
    assert weight.shape == (3, 1, 3, 4, 5)
    factors = schedule.temporal_weight(frames)[:, None, None] * schedule.spatial_weight((4, 5))
    for sample, phase in enumerate([1.0, 0.75, 0.0]):
        torch.testing.assert_close(weight[sample, 0], phase * factors)


def test_schedule_round_trips_through_json():
    schedule = PhasedSpatiotemporalSchedule(
        phases=(GuidancePhase(0.0, 0.4, 1.5), GuidancePhase(0.4, 1.0, 0.2)), outside_weight=0.1, chunk_frames=4
    )
    restored = PhasedSpatiotemporalSchedule.from_dict(json.loads(json.dumps(schedule.to_dict())))
    assert restored == schedule
    with pytest.raises(ValueError, match="unknown schedule fields"):
        PhasedSpatiotemporalSchedule.from_dict({"phase": []})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"phases": []}, "at least one"),
        ({"phases": [(0.1, 1.0, 1.0)]}, "covering progress 0 to 1"),
        ({"phases": [(0.0, 0.5, 1.0), (0.6, 1.0, 0.0)]}, "contiguous"),
        ({"phases": [(0.0, 0.5, 1.0), (0.5, 0.5, 1.0), (0.5, 1.0, 0.0)]}, "start < end"),
        ({"phases": [(0.0, 1.0, -1.0)]}, "non-negative phase scale"),
        ({"phases": [(0.0, 1.0)]}, r"\(start, end, scale\)"),
        ({"outside_weight": -0.1}, "non-negative outside_weight"),
        ({"face_center": (1.2, 0.5)}, "face_center"),
        ({"face_radii": (0.0, 0.2)}, "face_radii"),
        ({"face_softness": 0.0}, "face_softness"),
        ({"chunk_frames": 0}, "chunk_frames"),
    ],
)
def test_schedule_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PhasedSpatiotemporalSchedule(**kwargs)


def test_schedule_rejects_bad_call_arguments():
    schedule = PhasedSpatiotemporalSchedule()
    with pytest.raises(ValueError, match="integer frame indices"):
        schedule.temporal_weight(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative frame indices"):
        schedule.temporal_weight(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        schedule.spatial_weight((4, 4), region_mask=torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        schedule.spatial_weight((4, 4), region_mask=torch.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="latent_hw"):
        schedule.spatial_weight((0, 4))
    with pytest.raises(ValueError, match="progress"):
        schedule.phase_scale(1.5)
    with pytest.raises(ValueError, match="step_index"):
        schedule.audio_scale_map(4, 4, torch.arange(3), (4, 4))

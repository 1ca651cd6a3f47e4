"""Every metric separates held-out SynthTalk ground truth from deliberately broken versions of it, with the real
instruments (mediapipe face mesh, pocketsphinx, dlib) and the shipped, frozen sync expert (read only)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from echotorrent_core.data.synthtalk import ClipSpec, render_clip
from echotorrent_core.metrics.controls import TruthClip, control_rows, summarise_controls
from echotorrent_core.metrics.sync_expert import SHIPPED_WEIGHTS, load_sync_expert

SEEDS = (7001, 7002, 7003)  # not rendered for the shipped expert's training or held-out sets


@pytest.fixture(scope="module")
def truth_clips() -> list[TruthClip]:
    clips = []
    for seed in SEEDS:
        clip = render_clip(ClipSpec(seed=seed, domain="calm", size=96, split="heldout", seconds=4.8))
        clips.append(TruthClip(clip.spec.clip_id, clip.frames, torch.from_numpy(clip.audio)[None], 16_000,
                               f"synthtalk-{clip.metadata['identity_id']}"))
    assert len({c.identity for c in clips}) == len(clips), "the test needs distinct identities"
    return clips


@pytest.fixture(scope="module")
def summary(truth_clips) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    return summarise_controls(control_rows(truth_clips, load_sync_expert(SHIPPED_WEIGHTS), progress=False))


def test_sync_expert_offset_is_right_on_heldout_ground_truth(summary):
    assert summary["ground_truth"]["sync_offset_accuracy"] == 1.0
    assert summary["shifted_5"]["sync_offset_accuracy"] == 1.0


def test_sync_expert_confidence_separates_sync_from_broken_sync(summary):
    good = summary["ground_truth"]["sync_c"]
    for broken in ("shifted_40", "shuffled_audio", "frozen_mouth"):
        assert good > 2.0 * summary[broken]["sync_c"], (broken, good, summary[broken]["sync_c"])
    assert summary["shifted_5"]["sync_c_at_zero"] < 0.5 * summary["ground_truth"]["sync_c_at_zero"]


def test_landmark_sync_separates_sync_from_broken_sync(summary):
    assert summary["ground_truth"]["landmark_offset_accuracy"] >= 2 / 3
    assert summary["shifted_5"]["landmark_offset_accuracy"] >= 2 / 3
    good = summary["ground_truth"]["landmark_c_at_zero"]
    for broken in ("shifted_40", "shuffled_audio", "frozen_mouth"):
        bad = summary[broken]["landmark_c_at_zero"]
        assert good > 1.5 * bad, (broken, good, bad)


def test_identity_separates_the_same_face_from_another_identity(summary):
    same, other = summary["ground_truth"], summary["identity_swap"]
    assert same["identity_distance"] < 0.6 * other["identity_distance"]
    assert same["identity_similarity"] > other["identity_similarity"]


def test_detail_and_stability_separate_blur_and_colour_drift(summary):
    blurred, drifted, good = summary["blur"], summary["colour_drift"], summary["ground_truth"]
    assert blurred["laplacian_ratio"] < 0.5 and blurred["high_band_ratio"] < 0.5
    assert blurred["psnr"] < 35 and blurred["ssim"] < 0.95
    assert drifted["colour_drift"] > 3 * good["colour_drift"]
    assert drifted["psnr"] < 30


def test_shipped_weights_are_safetensors_with_a_manifest():
    head = SHIPPED_WEIGHTS.read_bytes()[:16]
    assert not head.startswith((b"\x80", b"PK"))  # neither a pickle nor a torch.save zip
    record = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
    assert record["command"].startswith("echotorrent eval train-sync-expert")
    assert record["heldout"]["offset_accuracy_ground_truth"] > 0.8
    assert hashlib.sha256(SHIPPED_WEIGHTS.read_bytes()).hexdigest() == record["weights"]["sha256"]
    assert np.isfinite(record["wall_seconds"])

"""The sync expert's contrastive objective, a few training steps on SynthTalk ground truth, safetensors round trip,
and `echotorrent eval --videos` end to end on a tiny SynthTalk folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from echotorrent_core.cli import main
from echotorrent_core.data.synthtalk import write_dataset
from echotorrent_core.data.clip_folder import scan_clip_folder
from echotorrent_core.metrics.measure_cache import clip_features
from echotorrent_core.metrics.sync_expert import (
    SHIPPED_WEIGHTS, SyncExpert, SyncExpertConfig, load_sync_expert, save_sync_expert, video_windows,
)
from echotorrent_core.metrics.train_sync import SyncTrainingConfig, contrastive_loss, train_sync_expert

METRICS_SOURCE = Path(__file__).resolve().parent.parent / "echotorrent_core" / "metrics"


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthtalk")
    write_dataset(folder, clips=2, size=64, domain="calm", seed=8100, split="heldout", seconds=2.4, progress=False)
    return folder


def test_contrastive_loss_prefers_the_in_sync_audio():
    generator = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(2, 10 + 2 * 3, 8, generator=generator), dim=-1)
    aligned = audio[:, 3:13]  # video embeddings equal to the in-sync audio
    loss, accuracy = contrastive_loss(aligned, audio, max_offset=3, temperature=0.05)
    assert accuracy == 1.0 and loss < 0.05
    late = audio[:, 4:14]  # one frame off: the in-sync candidate is never the best
    _, late_accuracy = contrastive_loss(late, audio, max_offset=3, temperature=0.05)
    assert late_accuracy == 0.0


def test_few_training_steps_lower_the_loss_and_round_trip(clip_folder, tmp_path):
    torch.set_num_threads(1)
    clips = [clip_features(e, tmp_path / "cache") for e in scan_clip_folder(clip_folder)]
    cfg = SyncTrainingConfig(steps=40, batch_clips=4, segment=8, max_offset=4, lr=2e-3)
    small = SyncExpertConfig(width=8, hidden=32, embed_dim=16)
    model, info = train_sync_expert(clips, cfg, small, progress=False)
    assert info["final_loss"] < 0.8 * info["first_loss"]
    path = save_sync_expert(model, tmp_path / "expert.safetensors")
    loaded = load_sync_expert(path)
    windows = video_windows(clips[0].crops)[:6]
    assert torch.equal(loaded.embed_video(windows), model.embed_video(windows))
    assert path.read_bytes()[:1] != b"\x80"
    with pytest.raises(ValueError, match="not a sync-expert file"):
        from echotorrent_core.checkpoints.safetensors_io import write_state_dict

        load_sync_expert(write_state_dict(tmp_path / "other.safetensors", {"x": torch.zeros(1)}))


def test_expert_rejects_clips_too_short_for_a_segment(clip_folder, tmp_path):
    clips = [clip_features(e, tmp_path / "cache") for e in scan_clip_folder(clip_folder)]
    with pytest.raises(ValueError, match="frames a segment needs"):
        train_sync_expert(clips, SyncTrainingConfig(steps=1, segment=200), SyncExpertConfig(8, 16, 8), progress=False)


def test_eval_videos_cli_prints_a_table_and_writes_json(clip_folder, tmp_path, capsys):
    report = tmp_path / "metrics.json"
    code = main(["eval", "--videos", str(clip_folder / "clips"), "--data", str(clip_folder), "--json", str(report),
                 "--expert", str(SHIPPED_WEIGHTS)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Sync-C" in printed and "PSNR" in printed and "mean" in printed
    payload = json.loads(report.read_text())
    assert len(payload["clips"]) == 2
    for row in payload["clips"]:
        assert row["psnr"] == pytest.approx(100.0)  # a ground-truth clip against itself (identical frames)
        assert row["identity_distance"] < 0.4 and row["face_found"] > 0.95
    assert payload["frechet_mouth"] == pytest.approx(0.0, abs=1e-6)


def test_metrics_never_use_pickle():
    for source in METRICS_SOURCE.rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"\bpickle\b|torch\.load\(|np\.load\(", text), source

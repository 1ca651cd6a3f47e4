"""Stage `audio_encoder`: phone labels from ground-truth timing, the differentiable encoder path equals the
inference encoder, a training step moves the encoder, export round trips, and a short run learns phones that a
chance-level control cannot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from echotorrent_core.checkpoints.loaders import load_audio_encoder
from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.data.synthtalk.phones import PHONE_ID, SILENCE
from echotorrent_core.media.video_writer import Mp4StreamWriter
from echotorrent_core.models.wav2vec import normalize_waveform
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.audio_encoder import AudioEncoderStageConfig, phone_accuracy, video_rate_layers
from echotorrent_core.training.stages.phone_windows import frame_centres, phones_at

RATE, FPS = 16000, 25
TONES = {"AA": 300.0, "IY": 900.0, "UW": 1800.0}  # each "phone" is a pure tone: learnable from the audio alone


def _write_clip_folder(root: Path, clips: int, seconds: float, seed: int, split: str) -> None:
    """Clips whose sound is a sequence of tones, one tone per labelled "phone" segment, silence in between."""
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "format": "echotorrent-clips/1", "fps": FPS, "sample_rate": RATE, "clips": []}
    for number in range(clips):
        clip_id = f"{split}-{number}"
        audio = np.zeros(int(seconds * RATE), dtype=np.float32)
        segments, t = [], 0.1
        while t < seconds - 0.3:
            phone = rng.choice(list(TONES))
            length = rng.uniform(0.12, 0.3)
            start, stop = int(t * RATE), int((t + length) * RATE)
            audio[start:stop] = 0.3 * np.sin(2 * np.pi * TONES[phone] * np.arange(stop - start) / RATE)
            segments.append((PHONE_ID[phone], t, t + length))
            t += length + rng.uniform(0.05, 0.15)
        frames = np.full((int(seconds * FPS), 32, 32, 3), 128, dtype=np.uint8)
        with Mp4StreamWriter(root / "clips" / f"{clip_id}.mp4", FPS, 32, 32, torch.from_numpy(audio), RATE) as out:
            out.write(frames)
        write_state_dict(root / "params" / f"{clip_id}.safetensors",
                         {"phone_segments": torch.tensor(segments, dtype=torch.float64)})
        index["clips"].append({"id": clip_id, "video": f"clips/{clip_id}.mp4", "params": f"params/{clip_id}.safetensors",
                               "split": split, "domain": "tones", "identity": None, "voice": "tone",
                               "frames": len(frames), "seconds": seconds})
    index_path.write_text(json.dumps(index))


def test_phone_labels_follow_the_segments_at_frame_centres() -> None:
    segments = torch.tensor([[PHONE_ID["AA"], 0.10, 0.30], [PHONE_ID["IY"], 0.30, 0.41]], dtype=torch.float64)
    labels = phones_at(frame_centres(0, 12, FPS), segments, PHONE_ID[SILENCE])
    centres = (torch.arange(12) + 0.5) / FPS  # 0.02, 0.06, ...
    expected = [PHONE_ID["AA"] if 0.10 <= c < 0.30 else PHONE_ID["IY"] if 0.30 <= c < 0.41 else PHONE_ID[SILENCE]
                for c in centres.tolist()]
    assert labels.tolist() == expected
    assert phones_at(frame_centres(5, 3, FPS), segments, 0).tolist() == labels[5:8].tolist()


def test_training_path_equals_the_inference_encoder(tmp_path) -> None:
    stage = get_stage("audio_encoder")(AudioEncoderStageConfig(data=str(tmp_path)), TrainerConfig(out_dir=str(tmp_path)),
                                       "cpu")
    encoder = stage.probe.encoder.eval()
    waveform = torch.randn(2 * RATE) * 0.1
    with torch.no_grad():
        expected = encoder.encode(waveform, fps=FPS, num_frames=50)  # [T, layers, dim]
        got = video_rate_layers(encoder, normalize_waveform(waveform)[None], 50)[0].transpose(0, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def _stage(tmp_path: Path, **overrides):
    data = tmp_path / "clips"
    _write_clip_folder(data, clips=6, seconds=3.0, seed=0, split="train")
    _write_clip_folder(data, clips=2, seconds=3.0, seed=1, split="heldout")
    config = AudioEncoderStageConfig(data=str(data), frames=25, windows_per_clip=4, **overrides)
    return get_stage("audio_encoder")(config, TrainerConfig(out_dir=str(tmp_path / "run"), seed=0), "cpu")


def test_a_short_run_learns_the_phones_and_exports_the_encoder(tmp_path) -> None:
    torch.manual_seed(0)
    stage = _stage(tmp_path, noise_snr_db=(20.0, 40.0))
    train, heldout = stage.dataset("train"), stage.dataset("heldout")
    assert train[0]["audio"].shape == (25 * 640,) and train[0]["phones"].shape == (25,)
    before = phone_accuracy(stage.probe.eval(), heldout, 25, torch.device("cpu"))
    probe = stage.probe.train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=3e-3)
    initial = {name: p.detach().clone() for name, p in probe.encoder.named_parameters()}
    for step in range(60):
        batch = {key: torch.stack([train[(step * 4 + i) % len(train)][key] for i in range(4)]) for key in train[0]}
        loss, logs = stage.generator_loss(batch, step)
        assert math.isfinite(loss.item()) and 0.0 <= logs["phone_acc"] <= 1.0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert any(not torch.equal(p, initial[n]) for n, p in probe.encoder.named_parameters())
    after = phone_accuracy(stage.probe.eval(), heldout, 25, torch.device("cpu"))
    # Three tones and silence: the majority class is the floor; a trained encoder must beat it clearly on
    # held-out clips, and on the speech frames (where majority = silence scores 0).
    assert after["phone_acc"] > after["majority_acc"] + 0.15, (before, after)
    assert after["speech_phone_acc"] > 0.6, (before, after)

    (path,) = stage.export(tmp_path / "export")
    encoder, _ = load_audio_encoder(path)
    waveform = heldout[0]["audio"]
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(waveform, fps=FPS),
                                   stage.probe.encoder.encode(waveform, fps=FPS), rtol=1e-5, atol=1e-6)

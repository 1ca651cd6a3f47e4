"""The stages read a real clip folder: face-centred windows for the VAE, the preprocessing cache for the DiT stages,
in the streaming layout (sample latent 0 = the sampler's sink latent of the window's first frame)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from echotorrent_core.checkpoints.loaders import load_vae, save_audio_encoder, save_vae
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.models.wav2vec import AudioEncoder
from echotorrent_core.streaming import StreamingSampler
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.registry import get_stage

from clip_fixtures import write_clip, write_index
from stage_fixtures import TINY


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "clips").mkdir()
    clips = []
    for name, split in (("a", "train"), ("b", "train"), ("c", "heldout")):
        write_clip(folder / "clips" / f"{name}.mp4", seconds=1.5, size=(96, 72))
        clips.append({"id": name, "video": f"clips/{name}.mp4", "split": split})
    write_index(folder, clips)
    torch.manual_seed(0)
    save_vae(WanVAE(TINY.vae), folder / "vae.safetensors")
    save_audio_encoder(AudioEncoder(TINY.wav2vec), folder / "audio_encoder.safetensors")
    return folder


def test_teacher_samples_from_a_clip_folder_follow_the_streaming_layout(clip_folder: Path, tmp_path: Path) -> None:
    stage_cls = get_stage("teacher")
    config = stage_cls.Config(data=str(clip_folder), vae=str(clip_folder / "vae.safetensors"),
                              audio_encoder=str(clip_folder / "audio_encoder.safetensors"), size=32, latent_frames=2)
    stage = stage_cls(config, TrainerConfig(out_dir=str(tmp_path)), "cpu")
    train, heldout = stage.dataset("train"), stage.dataset("heldout")
    assert len(train) == 8 and len(heldout) == 4  # 37 frames per clip, windows of 9 frames
    sample, window = train[1], train.windows[1]
    assert sample["latents"].shape == (16, 3, 4, 4) and sample["audio"].shape == (8, 2, 32)
    assert torch.equal(sample["audio"], window["audio_features"][1:9])
    vae, _ = load_vae(clip_folder / "vae.safetensors")
    sampler = StreamingSampler(WanDiT(TINY.dit), vae)
    sink = sampler.reference_latent(window["reference_pixels"])
    assert (sink[0] - sample["latents"][:, :1]).abs().max() < 1e-4
    assert stage.model.cfg.audio.encoder_layers == 2 and stage.model.cfg.audio.audio_dim == 32
    loss, _ = stage.generator_loss({k: torch.stack([train[i][k] for i in range(2)]) for k in sample}, 0)
    assert torch.isfinite(loss)


def test_vae_windows_from_a_clip_folder(clip_folder: Path, tmp_path: Path) -> None:
    stage_cls = get_stage("vae")
    stage = stage_cls(stage_cls.Config(data=str(clip_folder), size=32, frames=9),
                      TrainerConfig(out_dir=str(tmp_path)), "cpu")
    train, heldout = stage.dataset("train"), stage.dataset("heldout")
    assert len(train) == 8 and len(heldout) == 4
    assert train[0]["video"].shape == (9, 3, 32, 32) and train[0]["video"].dtype == torch.uint8
    assert stage.evaluate(0)["psnr"] > 0

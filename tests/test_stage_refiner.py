"""Stage `refiner`: only decoder + conv2 train (encoder bitwise unchanged), the training decode is the streaming
decode, export round trips through load_decoder_refiner + StreamingDecoder, pair caching and the SDEdit rollout."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from echotorrent_core.checkpoints.loaders import load_vae, save_dit
from echotorrent_core.checkpoints.refiner import decoder_state, load_decoder_refiner
from echotorrent_core.checkpoints.safetensors_io import read_header
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import StreamingDecoder, WanVAE
from echotorrent_core.streaming import StreamSettings
from echotorrent_core.training.config import TrainerConfig, load_config, parse_config
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.rollout import denoising_timesteps, rollout
from echotorrent_core.training.stages.refiner_decode import DecoderHalf, streaming_decode
from echotorrent_core.training.trainer import Trainer

from stage_fixtures import AUDIO, TINY
from test_stages_configs import CONFIGS
from test_stages_data import clip_folder  # noqa: F401 (the shared clip-folder fixture)

STREAM = StreamSettings(chunk_frames=1, window_frames=2, steps=2)
ENCODER_PREFIXES = ("encoder.", "conv1.")


def _student(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_dit(WanDiT(TINY.dit), path)
    path.with_name("student_stream.json").write_text(json.dumps(asdict(STREAM)))
    return path


@pytest.fixture(scope="module")
def files(clip_folder: Path, tmp_path_factory) -> dict[str, Path]:
    """test_stages_data's 3-clip folder (2 train, 1 held out) with its tiny VAE and audio encoder, a tiny student,
    and the pixel cache built once for every test."""
    folder = tmp_path_factory.mktemp("refiner")
    paths = {"clips": clip_folder, "vae": clip_folder / "vae.safetensors",
             "audio_encoder": clip_folder / "audio_encoder.safetensors",
             "student": _student(folder / "student" / "student.safetensors", seed=3), "cache": folder / "cache"}
    _stage(paths, folder / "warm").windows("train")
    paths["pixel_cache"] = paths["cache"] / "refiner_cache"
    return paths


def _table(files: dict[str, Path], **overrides) -> dict:
    return {"data": str(files["clips"]), "vae": str(files["vae"]), "audio_encoder": str(files["audio_encoder"]),
            "student": str(files["student"]), "cache_dir": str(files["cache"]), "size": 32, "latent_frames": 2,
            "eval_windows": 2, **overrides}


def _stage(files: dict[str, Path], out: Path, **overrides):
    cls = get_stage("refiner")
    return cls(cls.Config(**_table(files, **overrides)), TrainerConfig(out_dir=str(out)), "cpu")


def _batch(stage, count: int = 2) -> dict:
    train = stage.dataset("train")
    return {key: torch.stack([train[i][key] for i in range(count)]) for key in train[0]}


def test_training_decode_is_the_streaming_decoder():
    torch.manual_seed(1)
    vae = WanVAE(TINY.vae).eval()
    latents = torch.randn(1, TINY.vae.z_dim, 6, 4, 4, generator=torch.Generator().manual_seed(2))
    decoder = DecoderHalf(vae)
    assert set(decoder.state_dict()) == set(decoder_state(vae))
    with torch.no_grad():
        trained_path = streaming_decode(decoder, latents, chunk_frames=2).clamp(-1, 1)
        streaming = StreamingDecoder(vae)
        chunks = [latents[:, :, :1]] + list(latents[:, :, 1:].split(2, dim=2))
        expected = torch.cat([streaming.decode_chunk(chunk) for chunk in chunks], dim=2)
    assert trained_path.shape == (1, 3, 1 + 4 * 5, 32, 32)
    torch.testing.assert_close(trained_path, expected, rtol=0, atol=1e-6)
    assert expected.std() > 0.01


def test_one_step_trains_the_decoder_only_with_finite_losses(files, tmp_path):
    stage = _stage(files, tmp_path, adversarial=0.1)
    assert set(stage.modules()) == {"generator", "control", "critic"} and stage.critic_steps == 1
    batch = _batch(stage)
    assert batch["latents"].shape == (2, TINY.vae.z_dim, 3, 4, 4) and batch["pixels"].shape == (2, 3, 9, 32, 32)
    assert not torch.equal(batch["latents"][:, :, 1:], batch["real_latents"][:, :, 1:])
    torch.testing.assert_close(batch["latents"][:, :, :1], batch["real_latents"][:, :, :1], rtol=0, atol=0)
    critic_loss, _ = stage.critic_loss(batch, 0)
    assert torch.isfinite(critic_loss)
    loss, logs = stage.generator_loss(batch, 0)
    assert torch.isfinite(loss) and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert {"pair/fft_band", "real/l1", "control/l1", "adversarial"} <= set(logs)
    loss.backward()
    vae = stage.vae
    assert all(p.grad is None for p in stage.critic.parameters())  # the critic is only read
    assert all(p.grad is None for name, p in vae.named_parameters() if name.startswith(ENCODER_PREFIXES))
    assert vae.decoder.head[-1].weight.grad.abs().sum() > 0 and vae.conv2.weight.grad.abs().sum() > 0
    assert stage.control.conv2.weight.grad.abs().sum() > 0


def test_trainer_run_changes_only_decoder_and_conv2_and_exports_a_refiner(files, tmp_path):
    cls = get_stage("refiner")
    trainer_table = {"steps": 2, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2, "eval_every": 2,
                     "eval_batches": 1, "log_every": 1, "ema_decay": 0.0}
    config = parse_config({"trainer": trainer_table, "stage": _table(files)}, cls.Config, "refiner")
    trainer = Trainer(cls, config, out_dir=tmp_path / "run")
    result = trainer.run()
    assert torch.isfinite(torch.tensor(result.logs["loss/generator"]))
    stage = trainer.stage
    assert set(stage.modules()) == {"generator", "control"}  # the student DiT is no module: it only made the pairs
    base, _ = load_vae(files["vae"])
    base_state, trained_state = base.state_dict(), stage.vae.state_dict()
    for key, value in base_state.items():
        if key.startswith(ENCODER_PREFIXES):
            assert torch.equal(trained_state[key], value), key
    changed = {key for key, value in base_state.items() if not torch.equal(trained_state[key], value)}
    assert changed and all(key.startswith(("decoder.", "conv2.")) for key in changed)
    for role in ("generator", "control"):
        assert {name for name, _ in stage.modules()[role].named_parameters()} == set(decoder_state(base))
    exported = {path.name: path for path in result.exported}
    assert {"refiner.safetensors", "control_refiner.safetensors", "refiner_eval.json"} <= set(exported)
    table = json.loads(exported["refiner_eval.json"].read_text())["table"]
    assert set(table) == {"real", "self", "student"} and set(table["real"]) == {"base", "control", "refiner"}

    refined = load_decoder_refiner(exported["refiner.safetensors"], base)
    latents = stage.pairs("heldout", "student").tensors["latents"][:1]
    with torch.no_grad():
        streaming = StreamingDecoder(refined)
        chunks = [latents[:, :, :1]] + list(latents[:, :, 1:].split(STREAM.chunk_frames, dim=2))
        through_file = torch.cat([streaming.decode_chunk(chunk) for chunk in chunks], dim=2)
        trained = streaming_decode(stage.refiner, latents, STREAM.chunk_frames).clamp(-1, 1)
        untouched = streaming_decode(DecoderHalf(base), latents, STREAM.chunk_frames).clamp(-1, 1)
    torch.testing.assert_close(through_file, trained, rtol=0, atol=1e-6)
    assert not torch.allclose(through_file, untouched, atol=1e-4)
    for key, value in base_state.items():
        if key.startswith(ENCODER_PREFIXES):
            assert torch.equal(refined.state_dict()[key], value), key


def test_pair_cache_is_reused_and_regenerated_when_the_student_changes(files, tmp_path):
    student = _student(tmp_path / "student" / "student.safetensors", seed=3)
    table = {"data": str(files["pixel_cache"]), "student": str(student), "cache_dir": str(tmp_path / "pairs")}
    first = _stage(files, tmp_path / "a", **table).dataset("train").tensors["latents"].clone()
    path = tmp_path / "pairs" / "refiner_pairs_train_self.safetensors"
    stamp = path.stat().st_mtime_ns
    again = _stage(files, tmp_path / "b", **table).dataset("train").tensors["latents"]
    assert path.stat().st_mtime_ns == stamp and torch.equal(again, first)
    header = read_header(path)[1]
    _student(student, seed=4)
    changed = _stage(files, tmp_path / "c", **table).dataset("train").tensors["latents"]
    assert read_header(path)[1] != header
    assert not torch.allclose(changed[:, :, 1:], first[:, :, 1:])
    torch.testing.assert_close(changed[:, :, :1], first[:, :, :1], rtol=0, atol=0)  # the sink is the real latent


def test_sdedit_rollout_starts_from_the_noised_latents_and_runs_the_remaining_steps():
    torch.manual_seed(5)
    dit = WanDiT(TINY.dit).eval()
    settings = StreamSettings(chunk_frames=2, window_frames=2, steps=3)
    generator = torch.Generator().manual_seed(6)
    reference = torch.randn(1, TINY.vae.z_dim, 1, 4, 4, generator=generator)
    audio = torch.randn(1, 16, AUDIO.encoder_layers, AUDIO.audio_dim, generator=generator)
    init = torch.randn(1, TINY.vae.z_dim, 4, 4, 4, generator=generator)
    calls = []
    original = dit.forward_chunk
    dit.forward_chunk = lambda *args, **kwargs: calls.append(args[1][0, 0].item()) or original(*args, **kwargs)
    with torch.no_grad():
        out = rollout(dit, reference, audio, settings, 2, init_latents=init, start_step=2).latents
        other = rollout(dit, reference, audio, settings, 2, init_latents=init + 1, start_step=2).latents
    last_t = float(denoising_timesteps(settings)[2])
    assert calls[:5] == [0.0, last_t, 0.0, last_t, 0.0]  # sink commit, then per chunk: the last step and its commit
    assert 0 < last_t < 1000 and not torch.allclose(out, other)
    with pytest.raises(ValueError, match="init_latents"):
        rollout(dit, reference, audio, settings, 2, init_latents=init)


def test_refiner_recipes_read_the_vae_and_student_exports():
    for suffix in ("", "_quick"):
        load = lambda name: load_config(next(p for p in CONFIGS if p.stem == name + suffix), get_stage(name).Config)
        video = load_config(next(p for p in CONFIGS if p.stem == "vae_video" + suffix), get_stage("vae").Config)
        student, refiner = load("student"), load("refiner")
        assert refiner.stage.vae == student.stage.vae == f"{video.trainer.out_dir}/export/vae.safetensors"
        assert refiner.stage.student == f"{student.trainer.out_dir}/export/student.safetensors"
        assert refiner.stage.data == student.stage.data and refiner.stage.size == student.stage.size
        assert refiner.stage.latent_frames % student.stage.chunk_frames == 0

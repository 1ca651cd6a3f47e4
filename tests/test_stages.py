"""Stages `vae` and `teacher`: one short step trains, the teacher's loss and dropout, export round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echotorrent_core.checkpoints.loaders import load_dit, load_vae
from echotorrent_core.models.attention import Bidirectional
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import StreamingDecoder, decode_as_stream
from echotorrent_core.models.vae_cache import FeatureCache
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.losses.flow_matching import sample_timesteps
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.avatar_batch import conditioning, keep_mask
from echotorrent_core.training.stages.teacher_objective import teacher_loss
from echotorrent_core.training.stages.vae import VAEStageConfig, latent_statistics, pixels, posterior

from stage_fixtures import TINY, write_avatar_samples, write_frame_windows


def _one_step(stage, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """One AdamW step of the generator on `batch`; returns the loss and the parameters before the step."""
    model = stage.modules()["generator"]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, logs = stage.generator_loss(batch, 0)
    assert torch.isfinite(loss) and all(isinstance(v, float) for v in logs.values())
    loss.backward()
    optimizer.step()
    return float(loss.detach()), before


def _changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> float:
    return sum(float((p.detach() - before[n]).abs().sum()) for n, p in model.named_parameters())


def _batch(dataset, count: int) -> dict:
    return {key: torch.stack([dataset[i][key] for i in range(count)]) for key in dataset[0]}


def test_vae_stage_trains_and_exports_latent_statistics(tmp_path) -> None:
    data = write_frame_windows(tmp_path / "frames.safetensors")
    stage_cls = get_stage("vae")
    stage = stage_cls(VAEStageConfig(data=str(data), size=32, frames=5), TrainerConfig(out_dir=str(tmp_path)), "cpu")
    loss, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    assert _changed(stage.vae, before) > 0
    (path,) = stage.export(tmp_path / "out")
    vae, report = load_vae(path)
    assert vae.cfg.latents_mean != TINY.vae.latents_mean
    with torch.no_grad():
        video = pixels(_batch(stage.dataset("train"), 4)["video"])
        normalised = vae.encode(video).transpose(0, 1).flatten(1)
        mu, _ = posterior(stage.vae, video)
        assert torch.allclose(vae.encode_raw(video), mu, atol=1e-5)
    assert normalised.mean(dim=1).abs().max() < 1e-3
    assert (normalised.std(dim=1) - 1).abs().max() < 1e-3


def test_vae_stage_continues_from_an_exported_file_and_trains_it(tmp_path) -> None:
    """`init` = an exported VAE (loaded frozen, for inference) is made trainable and starts from its weights."""
    data = write_frame_windows(tmp_path / "frames.safetensors")
    trainer = TrainerConfig(out_dir=str(tmp_path))
    first = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=5), trainer, "cpu")
    (path,) = first.export(tmp_path / "out")
    stage = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=9, init=str(path)), trainer, "cpu")
    exported = load_vae(path)[0].state_dict()
    assert all(torch.equal(exported[n], p) for n, p in stage.vae.named_parameters())
    loss, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    assert _changed(stage.vae, before) > 0


def test_vae_stage_with_a_frozen_encoder_moves_only_the_decoder(tmp_path) -> None:
    """train_encoder = false: encoder + conv1 bitwise unchanged, decoder trained, export keeps init's statistics."""
    data = write_frame_windows(tmp_path / "frames.safetensors")
    trainer = TrainerConfig(out_dir=str(tmp_path))
    (path,) = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=5), trainer, "cpu").export(tmp_path / "a")
    stage = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=9, init=str(path), train_encoder=False),
                             trainer, "cpu")
    loss, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    frozen = lambda n: n.startswith(("encoder.", "conv1."))
    assert all(torch.equal(p, before[n]) for n, p in stage.vae.named_parameters() if frozen(n))
    assert sum(float((p.detach() - before[n]).abs().sum()) for n, p in stage.vae.named_parameters() if not frozen(n)) > 0
    (continued,) = stage.export(tmp_path / "b")
    assert load_vae(continued)[0].cfg.latents_mean == load_vae(path)[0].cfg.latents_mean
    with pytest.raises(ValueError, match="init"):
        VAEStageConfig(data=str(data), train_encoder=False)


def test_vae_stage_trains_and_exports_the_bounded_context_decode(tmp_path) -> None:
    """decode_context_latents = K: the training decode is the streamed bounded decode, and the export records K."""
    data = write_frame_windows(tmp_path / "frames.safetensors", frames=13)
    trainer = TrainerConfig(out_dir=str(tmp_path))
    (path,) = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=5), trainer, "cpu").export(tmp_path / "a")
    config = VAEStageConfig(data=str(data), size=32, frames=13, init=str(path), train_encoder=False,
                            decode_context_latents=1, decode_chunk_latents=1, encode_context_latents=1)
    stage = get_stage("vae")(config, trainer, "cpu")
    raw = torch.randn(1, stage.vae.cfg.z_dim, 4, 4, 4)
    with torch.no_grad():
        decoded = decode_as_stream(stage.vae, raw, chunk=1, context_latents=1)
        streamed = StreamingDecoder(stage.vae, context_latents=1)
        expected = torch.cat([streamed.decode_chunk_raw(raw[:, :, i : i + 1]) for i in range(4)], dim=2)
        whole = stage.vae.decode_steps(raw, FeatureCache())
    assert torch.equal(decoded, expected) and decoded.shape == whole.shape
    assert (decoded[:, :, 5:] - whole[:, :, 5:]).abs().max() > 1e-4  # latent 2 on: its history is cut
    _, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    assert _changed(stage.vae.decoder, {n[len("decoder."):]: p for n, p in before.items() if n.startswith("decoder.")})
    (exported,) = stage.export(tmp_path / "b")
    reloaded = load_vae(exported)[0]
    assert (reloaded.cfg.decode_context_latents, reloaded.cfg.encode_context_latents) == (1, 1)
    video = pixels(_batch(stage.dataset("train"), 1)["video"])
    with torch.no_grad():  # the training encode is the bounded one: latent 2 from frames 4..8 alone
        mu, _ = posterior(stage.vae, video)
        assert (mu[:, :, 2] - load_vae(path)[0].encode_raw(video[:, :, 4:9])[:, :, -1]).abs().max() < 1e-5
    assert load_vae(path)[0].cfg.decode_context_latents == 0


def test_vae_stage_trains_both_halves_in_the_bounded_streaming_layout(tmp_path) -> None:
    """train_encoder = true with both bounds: encoder and decoder move, the export records the bounds and its latent
    statistics are those of the bounded encode."""
    data = write_frame_windows(tmp_path / "frames.safetensors", frames=13)
    trainer = TrainerConfig(out_dir=str(tmp_path))
    (path,) = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=5), trainer, "cpu").export(tmp_path / "a")
    config = VAEStageConfig(data=str(data), size=32, frames=13, init=str(path), decode_context_latents=1,
                            decode_chunk_latents=1, encode_context_latents=1, stats_windows=4)
    stage = get_stage("vae")(config, trainer, "cpu")
    _, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    for half in ("encoder", "decoder"):
        assert _changed(getattr(stage.vae, half),
                        {n[len(half) + 1:]: p for n, p in before.items() if n.startswith(half + ".")})
    (exported,) = stage.export(tmp_path / "b")
    reloaded = load_vae(exported)[0]
    assert (reloaded.cfg.decode_context_latents, reloaded.cfg.encode_context_latents) == (1, 1)
    windows = stage.dataset("train")
    mean, _ = latent_statistics(reloaded, windows, 4)
    assert torch.allclose(torch.tensor(reloaded.cfg.latents_mean), torch.tensor(mean), atol=1e-2)
    assert not torch.allclose(torch.tensor(reloaded.cfg.latents_mean),
                              torch.tensor(load_vae(path)[0].cfg.latents_mean), atol=1e-4)


def _teacher_stage(tmp_path):
    data = write_avatar_samples(tmp_path / "samples.safetensors")
    config = get_stage("teacher").Config(data=str(data))
    return get_stage("teacher")(config, TrainerConfig(out_dir=str(tmp_path)), "cpu")


class _ReferenceFrameSpy(torch.nn.Module):
    """Wraps a DiT: records its inputs and adds a huge value to its prediction on latent frame 0."""

    def __init__(self, model: WanDiT) -> None:
        super().__init__()
        self.model, self.cfg, self.seen = model, model.cfg, {}

    def prepare_conditioning(self, **kwargs):
        return self.model.prepare_conditioning(**kwargs)

    @property
    def text_embedding(self):
        return self.model.text_embedding

    def forward(self, x, t, cond, attention):
        self.seen = {"x": x, "t": t, "attention": attention}
        out = self.model(x, t, cond, attention=attention)
        return out + 1e3 * (torch.arange(x.shape[2]) == 0).float()[None, None, :, None, None]


def test_teacher_loss_reads_a_clean_reference_and_scores_generated_frames_only(tmp_path) -> None:
    stage = _teacher_stage(tmp_path)
    batch = _batch(stage.dataset("train"), 2)
    t = torch.tensor([300.0, 800.0])
    noise = torch.randn(batch["latents"].shape)
    spy = _ReferenceFrameSpy(stage.model)
    spied, _ = teacher_loss(spy, batch, t, noise)
    plain, _ = teacher_loss(stage.model, batch, t, noise)
    assert torch.allclose(spied, plain)
    assert torch.equal(spy.seen["x"][:, :, 0], batch["latents"][:, :, 0])
    assert torch.equal(spy.seen["t"][:, 0], torch.zeros(2))
    assert torch.equal(spy.seen["t"][:, 1:], t[:, None].expand(2, 4))
    assert spy.seen["attention"] == Bidirectional()
    with torch.no_grad():
        velocity = stage.model(spy.seen["x"], spy.seen["t"], conditioning(stage.model, batch, range(5)))
    expected = (velocity[:, :, 1:] - (noise - batch["latents"])[:, :, 1:]).square().mean()
    assert torch.allclose(plain, expected, rtol=1e-5)


def test_motion_weighted_teacher_loss_trains_on_weighted_cells_and_logs_the_plain_mse(tmp_path) -> None:
    stage = _teacher_stage(tmp_path)
    batch = _batch(stage.dataset("train"), 2)
    t = torch.tensor([300.0, 800.0])
    noise = torch.randn(batch["latents"].shape)
    plain, plain_logs = teacher_loss(stage.model, batch, t, noise)
    weighted, logs = teacher_loss(stage.model, batch, t, noise, motion_weighting=4.0)
    assert not torch.allclose(plain, weighted)
    assert logs["flow_mse"] == pytest.approx(plain_logs["flow_mse"], rel=1e-6)
    config = dataclasses.replace(stage.config, motion_weighting=4.0)
    weighted_stage = get_stage("teacher")(config, TrainerConfig(out_dir=str(tmp_path)), "cpu")
    torch.manual_seed(0)
    loss, _ = weighted_stage.generator_loss(batch, 0)
    torch.manual_seed(0)
    size = batch["latents"].shape[0]
    expected_t = sample_timesteps((size,), config.shift)
    expected_noise = torch.randn(batch["latents"].shape)
    keep_text = keep_mask(size, 1.0 - config.text_dropout, "cpu")
    keep_audio = keep_mask(size, 1.0 - config.audio_dropout, "cpu")
    expected, _ = teacher_loss(weighted_stage.model, batch, expected_t, expected_noise, keep_text, keep_audio, 4.0)
    assert torch.allclose(loss, expected)


def test_dropped_text_and_audio_are_the_null_conditions_of_guidance(tmp_path) -> None:
    stage = _teacher_stage(tmp_path)
    batch = _batch(stage.dataset("train"), 2)
    batch["text"] = torch.randn(2, 5, TINY.dit.text_dim)
    model, frames = stage.model, range(5)
    dropped = conditioning(model, batch, frames, torch.tensor([False, True]), torch.tensor([True, False]))
    null_text = conditioning(model, dict(batch, text=torch.zeros_like(batch["text"])), frames)
    null_audio = conditioning(model, dict(batch, audio=torch.zeros_like(batch["audio"])), frames)
    full = conditioning(model, batch, frames)
    assert torch.allclose(dropped.text[0], null_text.text[0]) and torch.allclose(dropped.text[1], full.text[1])
    assert torch.allclose(dropped.audio[1], null_audio.audio[1]) and torch.allclose(dropped.audio[0], full.audio[0])
    assert not torch.allclose(full.text[0], null_text.text[0])
    assert not torch.allclose(full.audio[1], null_audio.audio[1])


def test_teacher_stage_step_and_export_round_trip(tmp_path) -> None:
    stage = _teacher_stage(tmp_path)
    torch.manual_seed(0)
    _, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    assert _changed(stage.model, before) > 0
    (path,) = stage.export(tmp_path / "out")
    loaded, _ = load_dit(path)
    assert loaded.cfg == stage.model.cfg
    state = stage.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in loaded.state_dict().items())
    batch = _batch(stage.dataset("train"), 1)
    t = torch.full((1, 5), 500.0)
    with torch.no_grad():
        a = stage.model(batch["latents"], t, conditioning(stage.model, batch, range(5)))
        b = loaded(batch["latents"], t, conditioning(loaded, batch, range(5)))
    assert (a - b).abs().max() < 1e-5

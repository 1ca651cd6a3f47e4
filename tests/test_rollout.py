"""Training rollout == the streaming sampler's chunk loop; gradients only where the stage asks for them."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.config import get_preset
from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.streaming import StreamingSampler, StreamSettings
from echotorrent_core.training.rollout import rollout

from sampler_inputs import stream_inputs, tiny_models

TINY = get_preset("tiny")
AUDIO = TINY.dit.audio


@pytest.fixture(scope="module")
def models() -> tuple[WanDiT, WanVAE]:
    return tiny_models()


def _inputs(frames: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return stream_inputs(frames, seed)


@pytest.mark.parametrize(
    "settings, guidance",
    [
        (StreamSettings(chunk_frames=3, window_frames=3, steps=3, seed=5), None),
        (StreamSettings(chunk_frames=3, window_frames=3, steps=2, rope_layout="absolute"), None),
        (StreamSettings(chunk_frames=2, window_frames=None, steps=2, solver="euler"),
         GuidancePolicy(GuidanceMode.TEXT_AUDIO_CFG, text_scale=2.0, audio_scale=3.0)),
    ],
)
def test_rollout_without_gradients_equals_the_streaming_sampler(models, settings, guidance) -> None:
    dit, vae = models
    frames = 41  # several chunks, past the rolling window
    reference, features = _inputs(frames)
    sampler = StreamingSampler(dit, vae, settings, guidance)
    streamed = torch.cat([chunk.latents for chunk in sampler.stream(reference, features)], dim=2)
    with torch.no_grad():
        rolled = rollout(dit, sampler.reference_latent(reference), features[None], settings,
                         sampler.num_chunks(frames), guidance=guidance)
    assert rolled.latents.shape == streamed.shape
    assert (rolled.latents - streamed).abs().max() < 1e-4
    assert rolled.latents.abs().max() > 0.1


def test_gradients_flow_only_through_the_exit_passes_of_the_chosen_chunks(models) -> None:
    dit, vae = models
    settings = StreamSettings(chunk_frames=2, window_frames=2, steps=3)
    reference, features = _inputs(20)
    latent = StreamingSampler(dit, vae, settings).reference_latent(reference)
    result = rollout(dit, latent, features[None], settings, num_chunks=3, exit_steps=[2, 0, 1], grad_chunks={2})
    assert result.exit_steps == (2, 0, 1)
    first, second, third = result.latents.split(2, dim=2)
    params = list(dit.parameters())
    untrained = torch.autograd.grad((first.sum() + second.sum()), params, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in untrained)
    dit.zero_grad()
    third.square().mean().backward()
    assert dit.blocks[0].self_attn.q.weight.grad.abs().sum() > 0
    assert dit.audio_proj.proj1_vf.weight.grad.abs().sum() > 0


def test_an_early_exit_returns_that_steps_prediction(models) -> None:
    dit, vae = models
    settings = StreamSettings(chunk_frames=2, window_frames=4, steps=3)
    reference, features = _inputs(8)
    latent = StreamingSampler(dit, vae, settings).reference_latent(reference)
    one_step = StreamingSampler(dit, vae, StreamSettings(chunk_frames=2, window_frames=4, steps=3))
    with torch.no_grad():
        early = rollout(dit, latent, features[None], settings, num_chunks=1, exit_steps=[0])
        full = rollout(dit, latent, features[None], settings, num_chunks=1)
    streamed = next(iter(one_step.stream(reference, features))).latents
    assert (full.latents - streamed).abs().max() < 1e-4
    assert (early.latents - full.latents).abs().max() > 1e-3


def test_bad_exit_steps_are_rejected(models) -> None:
    dit, _ = models
    latent = torch.zeros(1, 16, 1, 4, 4)
    features = torch.zeros(1, 8, AUDIO.encoder_layers, AUDIO.audio_dim)
    with pytest.raises(ValueError, match="exit_steps"):
        rollout(dit, latent, features, StreamSettings(steps=2), num_chunks=1, exit_steps=[2])

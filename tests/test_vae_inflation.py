"""An inflated image VAE is a per-frame video VAE: the image path is unchanged, latent k encodes frame 4k alone
and every latent decodes to its image, repeated; the VAE stage inflates `init` and sets a fresh VAE's posterior
variance on request."""

import pytest
import torch
from stage_fixtures import write_frame_windows
from tiny_vae import tiny_vae

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.models.vae import decode_as_stream
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.vae import VAEStageConfig, pixels, posterior
from echotorrent_core.training.stages.vae_inflation import inflate_image_vae


def test_inflation_keeps_the_image_path() -> None:
    vae = tiny_vae(0)
    image = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    before = vae.decode_raw(vae.encode_raw(image), clamp=False)
    after = inflate_image_vae(vae).decode_raw(vae.encode_raw(image), clamp=False)
    torch.testing.assert_close(after, before)


def test_inflated_video_vae_works_frame_by_frame() -> None:
    vae = inflate_image_vae(tiny_vae(1))
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    latents = vae.encode_raw(video)
    assert latents.shape[2] == 3
    for k, frame in enumerate((0, 4, 8)):
        torch.testing.assert_close(latents[:, :, k : k + 1], vae.encode_raw(video[:, :, frame : frame + 1]))
    decoded = decode_as_stream(vae, latents)
    images = [vae.decode_raw(latents[:, :, k : k + 1], clamp=False) for k in range(3)]
    torch.testing.assert_close(decoded[:, :, :1], images[0])
    for k in (1, 2):
        for t in range(4 * k - 3, 4 * k + 1):
            torch.testing.assert_close(decoded[:, :, t : t + 1], images[k], atol=1e-5, rtol=1e-4)


def test_a_random_vae_is_not_per_frame() -> None:
    vae = tiny_vae(1)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = vae.encode_raw(video)
    assert not torch.allclose(latents[:, :, 1:2], vae.encode_raw(video[:, :, 4:5]), atol=1e-3)


def test_the_vae_stage_inflates_an_image_vae_and_sets_a_fresh_posterior_variance(tmp_path) -> None:
    data = write_frame_windows(tmp_path / "frames.safetensors")
    trainer = TrainerConfig(out_dir=str(tmp_path))
    image = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=1, initial_log_variance=-8.0), trainer,
                             "cpu")
    with torch.no_grad():
        _, logvar = posterior(image.vae, pixels(image.dataset("train")[0]["video"][None]))
    assert abs(float(logvar.mean()) + 8.0) < 1.0
    (path,) = image.export(tmp_path / "image")
    video = get_stage("vae")(VAEStageConfig(data=str(data), size=32, frames=5, init=str(path), inflate_init=True),
                             trainer, "cpu")
    expected = inflate_image_vae(load_vae(path)[0]).state_dict()
    assert all(torch.equal(expected[n], p) for n, p in video.vae.named_parameters())
    with pytest.raises(ValueError, match="init"):
        VAEStageConfig(data=str(data), inflate_init=True)
    with pytest.raises(ValueError, match="init"):
        VAEStageConfig(data=str(data), init=str(path), initial_log_variance=-8.0)

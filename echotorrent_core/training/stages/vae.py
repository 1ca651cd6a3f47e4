"""Stage `vae`: a Wan-layout causal VAE (any VAEConfig width) trained on frame windows of the clip folder.

Windows are `1 + 4k` frames (the causal layout: the first frame encoded alone, then groups of 4). Loss: L1 + SSIM +
Laplacian high-frequency L1 on the decoded frames of a sampled posterior, + a small KL (losses/reconstruction.py).
Export measures the per-channel mean / std of the posterior means over the training windows and writes them into
the exported VAE's config (`latents_mean` / `latents_std`), so its latents are normalised as Wan's are (about zero
mean, unit variance per channel); the DiT stages encode with that file.

Bounded-context decoding (`decode_context_latents = K > 0`, encoder frozen or trained with it): the window's latents are decoded as a
stream is at inference, latent 0 alone, then chunks of `decode_chunk_latents`, each from a fresh causal cache after
its K previous latents (`StreamingDecoder(context_latents=K)`), and the export records K in the VAE's config, so
every streamed decode of that file uses the same bound. A decoder trained on short windows is then never run on a
longer history than it was trained with, however long the stream. `encode_context_latents = K` does the same for
the (frozen) encoder (`WanVAE.moments`: each latent encoded after at most K latents' frames), so every latent of a
long video is like those of the short windows the encoder was trained on; the decoder is trained on those latents
and the export records K too. Models trained on the old latents must be retrained then (the latents change).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...checkpoints.loaders import load_vae, save_vae
from ...config import VAEConfig, get_preset
from ...models.vae import WanVAE, decode_as_stream
from ...models.vae_cache import FeatureCache
from ..losses.cell_map import load_cell_map
from ..losses.reconstruction import ReconstructionWeights, pixel_map_weights, reconstruction_loss
from ..registry import register_stage
from ..stage import Stage
from .frame_windows import prepare_frame_windows
from .motion_crops import motion_centred_crops
from .network_init import initial_network
from .sample_files import TensorSamples, file_fingerprint, split_samples
from .vae_inflation import inflate_image_vae

EVAL_WINDOWS = 8  # held-out windows of each evaluation (8 x 25 frames in the video stages)


@dataclass
class VAEStageConfig:
    """data: a clip folder or a prepared `.safetensors` with `video` [N, T, 3, S, S] uint8; preset / vae: the
    VAEConfig (a preset's, with field overrides); init: continue from a VAE file; crop: train on random square
    crops of this side (a multiple of 8; the VAE is convolutional, so crops cut the cost by (size / crop)^2;
    evaluation and statistics use whole frames); frames: 1 + 4k per window; window_stride: frames between window
    starts (default: non-overlapping); detector: the face detector of the face-centred crops (data/clips.py);
    loss weights (l1, ssim, high_frequency, kl, ssim_window, motion_l1: the motion-weighted L1 of
    losses/reconstruction.py); motion_crop: the share of training crops centred on a pixel drawn by its motion
    (stages/motion_crops.py; 0 = one uniform crop per batch); stats_windows: windows measured for the latent
    statistics at export; train_encoder: false = continue `init` with the encoder and `conv1` frozen (decoder +
    `conv2` trained, e.g. on longer windows), so the latent space and its statistics stay exactly `init`'s and
    models trained on its latents stay valid; decode_context_latents / decode_chunk_latents: train (and export)
    bounded-context streaming decoding; encode_context_latents: the bounded encode (None: keep init's);
    both in the module docstring; with train_encoder = true both halves train in that streaming layout and the
    export measures the latent statistics with the bounded encode; inflate_init: `init` is an image VAE (trained
    with frames = 1) and starts as a per-frame video VAE (stages/vae_inflation.py); initial_log_variance: a fresh
    VAE's posterior log-variance starts at this value (the logvar half of `conv1`'s bias; None: the random
    initialisation's, near 0 = std 1, which at kl = 1e-6 training unlearns only slowly while the sampled noise
    blurs what the decoder learns); loss_map / map_l1: a latent-grid map file (losses/cell_map.py, e.g. the recipe's
    mouth map) spread over the pixels and the weight of the L1 + Laplacian error it weighs (whole frames only)."""

    data: str
    preset: str = "tiny"
    vae: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    size: int = 64
    crop: int | None = None
    frames: int = 9
    window_stride: int | None = None
    heldout_split: str = "heldout"
    fps: float = 25.0
    detector: str = "auto"
    cache_dir: str | None = None
    l1: float = 1.0
    ssim: float = 0.2
    high_frequency: float = 0.5
    kl: float = 1e-6
    ssim_window: int = 7
    motion_l1: float = 0.0
    motion_crop: float = 0.0
    stats_windows: int = 64
    train_encoder: bool = True
    decode_context_latents: int = 0
    decode_chunk_latents: int = 3
    encode_context_latents: int | None = None
    inflate_init: bool = False
    initial_log_variance: float | None = None
    loss_map: str | None = None
    map_l1: float = 0.0

    def __post_init__(self) -> None:
        if self.frames < 1 or (self.frames - 1) % 4:
            raise ValueError(f"frames must be 1 + 4k (the causal layout), got {self.frames}")
        if self.initial_log_variance is not None and self.init:
            raise ValueError("initial_log_variance starts a fresh VAE: it cannot apply to init")
        if self.inflate_init and not self.init:
            raise ValueError("inflate_init = true inflates the image VAE of init: set init to its file")
        if not self.train_encoder and not self.init:
            raise ValueError("train_encoder = false continues a trained VAE: set init to its file")
        if self.decode_context_latents < 0 or self.decode_chunk_latents < 1:
            raise ValueError(f"expected decode_context_latents >= 0 and decode_chunk_latents >= 1, got "
                             f"{self.decode_context_latents} and {self.decode_chunk_latents}")
        if self.encode_context_latents is not None and self.encode_context_latents < 0:
            raise ValueError(f"expected encode_context_latents >= 0, got {self.encode_context_latents}")
        if self.crop is not None and (self.crop % 8 or not 0 < self.crop <= self.size):
            raise ValueError(f"crop must be a multiple of 8 in (0, size={self.size}], got {self.crop}")
        if not 0.0 <= self.motion_crop <= 1.0 or (self.motion_crop and self.crop is None):
            raise ValueError(f"motion_crop must be in [0, 1] and needs crop, got {self.motion_crop} (crop {self.crop})")
        if self.map_l1 and (not self.loss_map or self.crop is not None):
            raise ValueError(f"map_l1 = {self.map_l1} needs loss_map (a map file) and whole frames (crop unset), got "
                             f"loss_map {self.loss_map!r}, crop {self.crop}")


def pixels(video: torch.Tensor) -> torch.Tensor:
    """Batch `video` `[B, T, 3, S, S]` uint8 -> `[B, 3, T, S, S]` float in [-1, 1]."""
    return video.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0


def random_crop(video: torch.Tensor, crop: int | None) -> torch.Tensor:
    """One random `crop` x `crop` window (global torch RNG) of a batch `[B, T, 3, S, S]`; None = unchanged."""
    if crop is None or crop == video.shape[-1]:
        return video
    top, left = (torch.randint(0, side - crop + 1, (1,)).item() for side in video.shape[-2:])
    return video[..., top : top + crop, left : left + crop]


def posterior(vae: WanVAE, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal encode (first frame alone, then groups of 4; context-bounded when the VAE's config says so,
    `WanVAE.moments`) -> (mu, logvar) `[B, z, 1 + (T-1)/4, S/8, S/8]` each."""
    vae.check_video(video)
    mu, logvar = vae.moments(video).chunk(2, dim=1)
    return mu, logvar.clamp(-30.0, 20.0)


@torch.no_grad()
def latent_statistics(vae: WanVAE, windows: TensorSamples, count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the posterior means of `count` windows spread evenly over the data set (the
    windows come clip by clip, so the first ones would describe one clip only)."""
    device = next(vae.parameters()).device
    means = []
    for index in torch.linspace(0, len(windows) - 1, min(count, len(windows))).round().long().unique().tolist():
        mu, _ = posterior(vae, pixels(windows[index]["video"][None]).to(device))
        means.append(mu.transpose(0, 1).flatten(1))
    values = torch.cat(means, dim=1).double()
    std = values.std(dim=1).clamp_min(1e-6)
    return tuple(values.mean(dim=1).tolist()), tuple(std.tolist())


@register_stage
class VAEStage(Stage):
    name = "vae"
    Config = VAEStageConfig

    def __init__(self, config: VAEStageConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        self.vae = initial_network(
            config.init, lambda path: load_vae(path, dtype=torch.float32)[0],
            lambda: WanVAE(VAEConfig.from_dict(get_preset(config.preset).vae.to_dict() | config.vae)),
            trainer_config.seed)
        if config.inflate_init:
            inflate_image_vae(self.vae)
        if config.initial_log_variance is not None:
            with torch.no_grad():
                self.vae.conv1.bias[self.vae.cfg.z_dim :] = config.initial_log_variance
        if not config.train_encoder:
            self.vae.encoder.requires_grad_(False)
            self.vae.conv1.requires_grad_(False)
        if not config.train_encoder or config.decode_context_latents or config.encode_context_latents is not None:
            bounds = {"decode_context_latents": config.decode_context_latents}
            if config.encode_context_latents is not None:
                bounds["encode_context_latents"] = config.encode_context_latents
            self.vae.cfg = dataclasses.replace(self.vae.cfg, **bounds)  # what the training encode / decode and
            # the export use
        self.weights = ReconstructionWeights(config.l1, config.ssim, config.high_frequency, config.kl,
                                             config.ssim_window, config.motion_l1, config.map_l1)
        self.pixel_map = (pixel_map_weights(load_cell_map(config.loss_map), config.size).to(device)
                          if config.map_l1 else None)
        self.cache_dir = Path(config.cache_dir or Path(trainer_config.out_dir) / "data")
        self._datasets: dict[str, TensorSamples | None] = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.vae}

    def dataset(self, split: str) -> TensorSamples | None:
        if split not in self._datasets:
            self._datasets[split] = self._load(split)
        return self._datasets[split]

    def _load(self, split: str) -> TensorSamples | None:
        config = self.config
        stride = config.window_stride or config.frames
        path = lambda name: self.cache_dir / f"frames_{name}_{config.size}px_{config.frames}f.safetensors"
        fingerprint = lambda name: {
            "kind": "frames", "index": file_fingerprint(Path(config.data) / "index.json"), "split": name,
            "size": config.size, "frames": config.frames, "stride": stride, "fps": config.fps,
            "detector": config.detector,
        }
        build = lambda name: prepare_frame_windows(config.data, name, config.size, config.frames, stride, config.fps,
                                                   config.detector)
        return split_samples(config.data, split, config.heldout_split, path, fingerprint, build)

    def _reconstruct(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, dict[str, float]]:
        target = pixels(video)
        mu, logvar = posterior(self.vae, target)
        z = mu + torch.randn(mu.shape).to(mu) * (0.5 * logvar).exp() if sample else mu
        if self.config.decode_context_latents:
            decoded = decode_as_stream(self.vae, z, self.config.decode_chunk_latents,
                                       self.config.decode_context_latents)
        else:
            decoded = self.vae.decode_steps(z, FeatureCache())
        return reconstruction_loss(decoded, target, mu, logvar, self.weights, self.pixel_map)

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        video = (motion_centred_crops(batch["video"], config.crop, config.motion_crop) if config.motion_crop
                 else random_crop(batch["video"], config.crop))
        return self._reconstruct(video, sample=True)

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out reconstruction from the posterior means (L1, SSIM, high-frequency, PSNR) of
        `EVAL_WINDOWS` windows spread evenly over the held-out set (so over its clips, not the first clip's)."""
        heldout = self.dataset("heldout")
        if heldout is None:
            return {}
        chosen = torch.linspace(0, len(heldout) - 1, min(len(heldout), EVAL_WINDOWS)).round().long().unique()
        video = torch.stack([heldout[int(i)]["video"] for i in chosen]).to(self.device)
        _, logs = self._reconstruct(video, sample=False)
        return logs

    def export(self, out_dir: Path) -> list[Path]:
        trained = WanVAE(self.vae.cfg)
        trained.load_state_dict(self.export_weights("generator"))
        if not self.config.train_encoder:
            return [save_vae(trained, Path(out_dir) / "vae.safetensors")]
        mean, std = latent_statistics(trained.to(self.device), self.dataset("train"), self.config.stats_windows)
        exported = WanVAE(dataclasses.replace(self.vae.cfg, latents_mean=mean, latents_std=std))
        exported.load_state_dict(trained.state_dict())
        return [save_vae(exported, Path(out_dir) / "vae.safetensors")]

"""Stage `refiner` (the paper's VAE Decoder Refiner): fine-tune only the VAE decoder (+ `conv2`) in pixel space so that
decoding the streaming student's latents restores high-frequency detail; the latent space never moves.

The paper says only "decoded student latents -> real frames, decoder only". Public design where it is silent:
- Frozen: the encoder and `conv1` (tested bitwise), the student DiT (loaded only to make the pairs, then released).
  Trainable role `generator` = `DecoderHalf` (`conv2.*` + `decoder.*`, exactly a refiner file's tensors).
- Pairs (refiner_pairs.py): per training window the student's streaming rollout (`training.rollout`, no gradients)
  gives latents, cached in safetensors and regenerated when the student, its stream settings, the VAE, the data or
  a setting changes. `target = "student"` uses the free rollout from the window's reference latent and audio;
  `target = "self"` (DEFAULT) the window's real latents re-noised to the student's timestep `self_start_step`
  (default the last, least noisy one) and re-denoised by the student, chunk by chunk with its KV cache. Why self
  by default: a free rollout invents its own motion, so per-pixel losses against the real frames would teach the
  decoder to blur towards the average of plausible motions, the opposite of restoring detail; the self pairs keep
  the real window's coarse structure while their detail is the student's few-step output, so L1 / SSIM stay
  meaningful. The FFT band term (refiner_losses.py) is shift-invariant and usable with either kind.
- Decode path: `streaming_decode`, the sampler's order (sink alone, then chunks of the student's `chunk_frames`
  with the causal cache carried over; the sink frame is not in the loss, inference drops it).
- Loss: L1 + SSIM + Laplacian + FFT high band on the pair latents, + `real_weight` x (L1 + SSIM + Laplacian) on
  the window's real latents, decode(encode(real)) (the refiner stays a valid decoder of real latents), + optional
  `adversarial` x hinge loss of a small patch discriminator (role `critic`, one critic update per step; off by
  default: on the CPU it doubles the step time).
- Control (`control = true`): role `control`, another copy of the base decoder, trained in the same run on the same
  batches, steps and optimiser settings with plain reconstruction of real latents only, so an improvement of the
  refiner over the base decoder can be told apart from "more decoder training".
- Evaluation (refiner_eval.py): held-out windows, base / control / refiner decoders on real, self and student
  latents, with metrics/image_quality.py; a table is printed; the refiner's PSNR on real latents may drop at most
  `real_psnr_bound_db` below the base decoder's (`real/psnr_drop_db`, `real/within_bound`).
Exports `refiner.safetensors` (checkpoints/refiner.py format; the Load EchoTorrent refiner input), with the
control `control_refiner.safetensors`, and `refiner_eval.json` / `refiner_eval.txt`. Cost: three streaming
decodes with gradients per sample (pairs, real latents, control); on GPUs the decoder at 480x832 is the whole cost.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...checkpoints.loaders import load_audio_encoder, load_vae
from ...checkpoints.refiner import save_decoder_refiner
from ...data.cache_dataset import CachedWindows
from ...guidance import GuidancePolicy
from ..registry import register_stage
from ..stage import Stage
from .avatar_stage import split_name
from .refiner_decode import DecoderHalf, EncoderHalf, streaming_decode
from .refiner_eval import evaluate_decoders, flatten, format_table
from .refiner_losses import DetailWeights, PatchDiscriminator, detail_loss, hinge_critic_loss, hinge_generator_loss
from .refiner_pairs import PAIR_KINDS, cached_pairs, ensure_pixel_cache, student_stream_settings
from .sample_files import TensorSamples
from .streaming_windows import is_cache


@dataclass
class RefinerConfig:
    """data: a clip folder (its pixel cache is built under cache_dir with vae + audio_encoder) or a cache folder built
    with pixels; vae: the VAE file (base decoder, frozen encoder); student: the student DiT file; stream: its
    StreamSettings JSON (default student_stream.json beside it); size / latent_frames (whole student chunks) /
    fps / detector: the windows; target "self" | "student" (module docstring); self_start_step: student step index
    the self pairs are re-denoised from (-1 = the last); guidance_*: the student's guidance for the pairs;
    pair_seed / pair_batch; loss weights l1 / ssim / laplacian / fft_band / ssim_window, real_weight, adversarial
    (+ discriminator_width); control: train the reconstruction-only control; eval_windows: held-out windows
    evaluated; real_psnr_bound_db: allowed PSNR drop on real latents."""

    data: str
    vae: str
    student: str
    audio_encoder: str | None = None
    stream: str | None = None
    size: int = 64
    latent_frames: int = 6
    heldout_split: str = "heldout"
    fps: float = 25.0
    detector: str = "auto"
    cache_dir: str | None = None
    target: str = "self"
    self_start_step: int = -1
    guidance_mode: str = "single"
    guidance_text_scale: float = 5.0
    guidance_audio_scale: float = 4.0
    pair_seed: int = 0
    pair_batch: int = 4
    l1: float = 1.0
    ssim: float = 0.2
    laplacian: float = 0.5
    fft_band: float = 0.1
    ssim_window: int = 7
    real_weight: float = 0.5
    adversarial: float = 0.0
    discriminator_width: int = 32
    control: bool = True
    eval_windows: int = 8
    real_psnr_bound_db: float = 0.5

    def __post_init__(self) -> None:
        if self.target not in PAIR_KINDS:
            raise ValueError(f"target must be one of {PAIR_KINDS}, got {self.target!r}")
        if self.real_weight < 0 or self.adversarial < 0:
            raise ValueError(f"real_weight and adversarial must be >= 0, got {self.real_weight}, {self.adversarial}")

    @property
    def guidance(self) -> GuidancePolicy:
        return GuidancePolicy(self.guidance_mode, self.guidance_text_scale, self.guidance_audio_scale)

    @property
    def detail_weights(self) -> DetailWeights:
        return DetailWeights(self.l1, self.ssim, self.laplacian, self.fft_band, self.ssim_window)

    @property
    def reconstruction_weights(self) -> DetailWeights:
        """Plain reconstruction: the pair weights without the FFT band (the regulariser and the control)."""
        return DetailWeights(self.l1, self.ssim, self.laplacian, 0.0, self.ssim_window)


def _pixels(batch_pixels: torch.Tensor) -> torch.Tensor:
    """uint8 `[B, 3, T, S, S]` -> float in [-1, 1]."""
    return batch_pixels.float() / 127.5 - 1.0


@register_stage
class RefinerStage(Stage):
    name = "refiner"
    Config = RefinerConfig

    def __init__(self, config: RefinerConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        self.settings = student_stream_settings(config.student, config.stream)
        if config.latent_frames % self.settings.chunk_frames:
            raise ValueError(f"latent_frames {config.latent_frames} must be whole student chunks of "
                             f"{self.settings.chunk_frames}")
        steps = self.settings.steps
        self.start_step = config.self_start_step % steps if -steps <= config.self_start_step < steps else None
        if self.start_step in (None, 0):
            raise ValueError(f"self_start_step must name one of the student's steps 1 .. {steps - 1} (or -1 for the "
                             f"last); step 0 is pure noise, i.e. the free rollout (target 'student')")
        base = load_vae(config.vae, dtype=torch.float32)[0].eval()
        self.vae = copy.deepcopy(base)
        self.refiner = DecoderHalf(self.vae).requires_grad_(True)
        self.encoder = EncoderHalf(self.vae).requires_grad_(False)
        self.base_decoder = DecoderHalf(base).requires_grad_(False)
        self.control = DecoderHalf(copy.deepcopy(base)).requires_grad_(True) if config.control else None
        self.critic = PatchDiscriminator(config.discriminator_width) if config.adversarial > 0 else None
        self.critic_steps = 1 if self.critic is not None else 0
        self.cache_dir = Path(config.cache_dir or Path(trainer_config.out_dir) / "data")
        self._cache_path: Path | None = None
        self._windows: dict[str, CachedWindows | None] = {}
        self._pairs: dict[tuple[str, str], TensorSamples | None] = {}

    # ------------------------------------------------------------------ roles
    def modules(self) -> dict[str, nn.Module]:
        roles: dict[str, nn.Module] = {"generator": self.refiner}
        if self.control is not None:
            roles["control"] = self.control
        if self.critic is not None:
            roles["critic"] = self.critic
        return roles

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "base_decoder": self.base_decoder}

    # ------------------------------------------------------------------ data
    def _cache(self) -> Path:
        config = self.config
        if is_cache(config.data):
            return Path(config.data)
        if config.audio_encoder is None:
            raise ValueError(f"building the pixel cache of the clip folder {config.data} needs [stage] audio_encoder")
        encoder, _ = load_audio_encoder(config.audio_encoder, device=self.device)
        vae = load_vae(config.vae, dtype=torch.float32, device=self.device)[0].eval()
        return ensure_pixel_cache(config.data, self.cache_dir / "refiner_cache", vae, encoder.eval(), config.size,
                                  config.latent_frames, config.fps, config.detector)

    def windows(self, split: str) -> CachedWindows | None:
        """The cached windows of "train" / "heldout" (None when there is none of that split)."""
        if split not in self._windows:
            if self._cache_path is None:
                self._cache_path = self._cache()
            windows = CachedWindows(self._cache_path, split=split_name(split, self.config.heldout_split))
            if len(windows) and "pixels" not in windows[0]:
                raise ValueError(f"the cache at {self._cache_path} has no pixels; build it with --keep-pixels "
                                 "(or pass the clip folder)")
            if len(windows) and windows[0]["latents"].shape[1] < 1 + self.config.latent_frames:
                raise ValueError(f"the cache at {self._cache_path} holds fewer than 1 + {self.config.latent_frames} "
                                 "latent frames per window")
            if split == "train" and not len(windows):
                raise ValueError(f"{self.config.data} gives no training window")
            self._windows[split] = windows if len(windows) else None
        return self._windows[split]

    def pairs(self, split: str, kind: str) -> TensorSamples | None:
        """Pairs of `kind` on `split` (refiner_pairs.py), generated once and cached under cache_dir."""
        if (split, kind) not in self._pairs:
            windows = self.windows(split)
            config = self.config
            self._pairs[split, kind] = None if windows is None else cached_pairs(
                self.cache_dir / f"refiner_pairs_{split}_{kind}.safetensors", windows, config.student, config.vae,
                config.latent_frames, self.settings, config.guidance, kind,
                self.start_step if kind == "self" else 0, config.pair_seed + (0 if split == "train" else 1),
                config.pair_batch, self.device)
        return self._pairs[split, kind]

    def dataset(self, split: str) -> TensorSamples | None:
        return self.pairs(split, self.config.target)

    # ------------------------------------------------------------------ losses
    def _decode(self, decoder: DecoderHalf, latents: torch.Tensor) -> torch.Tensor:
        """Streamed frames without the sink frame `[B, 3, 4F, S, S]` (unclamped)."""
        return streaming_decode(decoder, latents, self.settings.chunk_frames)[:, :, 1:]

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        target = _pixels(batch["pixels"])[:, :, 1:]
        pair_loss, pair_logs = detail_loss(self._decode(self.refiner, batch["latents"]), target,
                                           self.config.detail_weights)
        logs = {f"pair/{k}": v for k, v in pair_logs.items()}
        loss = pair_loss
        if self.config.real_weight:
            real_loss, real_logs = detail_loss(self._decode(self.refiner, batch["real_latents"]), target,
                                               self.config.reconstruction_weights)
            loss = loss + self.config.real_weight * real_loss
            logs |= {f"real/{k}": v for k, v in real_logs.items()}
        if self.critic is not None:
            adversarial = hinge_generator_loss(self.critic, self._decode(self.refiner, batch["latents"]))
            loss = loss + self.config.adversarial * adversarial
            logs["adversarial"] = float(adversarial.detach())
        if self.control is not None:
            control_loss, control_logs = detail_loss(self._decode(self.control, batch["real_latents"]), target,
                                                     self.config.reconstruction_weights)
            loss = loss + control_loss
            logs |= {f"control/{k}": v for k, v in control_logs.items()}
        return loss, logs

    def critic_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]] | None:
        if self.critic is None:
            return None
        with torch.no_grad():
            fake = self._decode(self.refiner, batch["latents"])
        loss = hinge_critic_loss(self.critic, _pixels(batch["pixels"])[:, :, 1:], fake)
        return loss, {"hinge": float(loss.detach())}

    # ------------------------------------------------------------------ evaluation and export
    def evaluation_table(self) -> dict[str, dict[str, dict[str, float]]] | None:
        """`{latents: {decoder: {metric: value}}}` on the first `eval_windows` held-out windows (None: no held-out)."""
        pairs = {kind: self.pairs("heldout", kind) for kind in PAIR_KINDS}
        if pairs["self"] is None:
            return None
        count = min(self.config.eval_windows, len(pairs["self"]))
        take = lambda samples, key: samples.tensors[key][:count]
        sources = {"real": take(pairs["self"], "real_latents"), "self": take(pairs["self"], "latents"),
                   "student": take(pairs["student"], "latents")}
        decoders = {"base": self.base_decoder, "control": self.control, "refiner": self.refiner}
        decoders = {name: decoder for name, decoder in decoders.items() if decoder is not None}
        return evaluate_decoders(decoders, sources, take(pairs["self"], "pixels"), self.settings.chunk_frames)

    def _summary(self, table: dict) -> dict[str, float]:
        drop = table["real"]["base"]["psnr"] - table["real"]["refiner"]["psnr"]
        return flatten(table) | {"real/psnr_drop_db": drop,
                                 "real/within_bound": float(drop <= self.config.real_psnr_bound_db)}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        table = self.evaluation_table()
        if table is None:
            return {}
        summary = self._summary(table)
        print(f"refiner evaluation at step {step} (held-out windows; real-latent PSNR drop "
              f"{summary['real/psnr_drop_db']:.3f} dB, bound {self.config.real_psnr_bound_db} dB)\n"
              f"{format_table(table)}", flush=True)
        return summary

    def _export_decoder(self, role: str, path: Path) -> Path:
        vae = copy.deepcopy(self.vae).cpu()
        vae.load_state_dict(self.export_weights(role), strict=False)
        return save_decoder_refiner(vae, path)

    def export(self, out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        files = [self._export_decoder("generator", out_dir / "refiner.safetensors")]
        if self.control is not None:
            files.append(self._export_decoder("control", out_dir / "control_refiner.safetensors"))
        with torch.no_grad():
            table = self.evaluation_table()
        if table is not None:
            summary = self._summary(table)
            for suffix, text in ((".json", json.dumps({"table": table, "summary": summary}, indent=2)),
                                 (".txt", format_table(table) + "\n")):
                path = out_dir / f"refiner_eval{suffix}"
                partial = path.with_suffix(suffix + ".tmp")
                partial.write_text(text)
                partial.replace(path)
                files.append(path)
        return files

"""The windowed bidirectional baseline: how current ComfyUI avatar workflows (InfiniteTalk) make long videos.

Defaults follow InfiniteTalk: windows of 81 video frames (21 latent frames), the last 9 video frames (3 latent
frames) of a window become the clean "motion frames" that open the next one, 40 Euler steps of the many-step
schedule, 3-pass text + audio CFG, bidirectional attention over the whole window, and a VAE decode per window
(`decode_as_stream`: the whole causal history for Wan's VAE; a VAE whose config bounds the decode context gets it).
The first window opens on the reference latent; every later one on the VAE encode of the previous window's last
`motion_frames` decoded frames as a clip of their own (frame 0 alone, then groups of 4: the layout the model trained
on, whose frame 0 is an image latent; MultiTalk re-encodes its motion frames the same way). Motion latents are held
clean (t = 0) and re-imposed after every step. Used by the streaming benchmark as the point of comparison, and runnable on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from . import flow
from .guidance import ConditionVariant, GuidanceMode, GuidancePolicy
from .media.colour_map import apply_colour_map, fit_colour_map
from .media.frames import video_to_frames
from .models.attention import Bidirectional
from .models.audio_windows import first_frame_window, latent_frame_windows
from .models.vae import decode_as_stream
from .streaming.denoise import NullConditions


@dataclass(frozen=True)
class WindowSettings:
    """window_frames / motion_frames in video frames (1 + 4k each); steps of the many-step Euler schedule;
    colour_match: every decoded window goes through the colour map that takes the first window's decoded portrait
    (its frame 0) to the portrait (`media.colour_map`, as `StreamSettings.colour_match`), before its last frames are
    re-encoded as the next window's motion frames."""

    window_frames: int = 81
    motion_frames: int = 9
    steps: int = 40
    shift: float = 5.0
    seed: int = 0
    colour_match: bool = False

    def __post_init__(self) -> None:
        for name in ("window_frames", "motion_frames"):
            if (getattr(self, name) - 1) % 4 or getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 + 4k video frames, got {getattr(self, name)}")
        if self.motion_frames >= self.window_frames:
            raise ValueError("motion_frames must be fewer than window_frames")


@dataclass(frozen=True)
class WindowOutput:
    """New frames `[T, H, W, 3]` in [0, 1] of one window, with the passes (steps x guidance passes over the whole
    window; no cache, so no cache-writing pass: `commit_passes` 0) and seconds it took."""

    index: int
    frames: torch.Tensor
    passes: int
    seconds: float
    commit_passes: int = 0


class WindowedBidirectionalSampler:
    """Generates a video window by window with a bidirectional DiT and many-step CFG."""

    def __init__(self, dit: torch.nn.Module, vae: torch.nn.Module, settings: WindowSettings = WindowSettings(),
                 guidance: GuidancePolicy | None = None) -> None:
        self.dit = dit
        self.vae = vae
        self.settings = settings
        self.guidance = guidance or GuidancePolicy(mode=GuidanceMode.TEXT_AUDIO_CFG)
        self.stride = vae.cfg.temporal_stride

    def stream(self, reference: torch.Tensor, audio_features: torch.Tensor, num_frames: int | None = None,
               check_interrupt: Callable[[], None] | None = None) -> Iterator[WindowOutput]:
        """reference `[3, H, W]` in [-1, 1]; audio_features `[T_video, layers, dim]`; yields each window's new frames."""
        param = next(self.dit.parameters())
        num_frames = num_frames or len(audio_features)
        window_latents = 1 + (self.settings.window_frames - 1) // self.stride
        with torch.no_grad():
            motion = self.vae.encode(reference.to(param.device, next(self.vae.parameters()).dtype)[None, :, None])
            cfg = self.dit.cfg
            base = self.dit.prepare_conditioning(text=param.new_zeros(1, cfg.text_len, cfg.text_dim))
        conditions = NullConditions(self.dit, base, base)
        generator = torch.Generator().manual_seed(self.settings.seed)
        timesteps = flow.many_step_timesteps(self.settings.steps, self.settings.shift).tolist() + [0.0]
        padded = torch.cat([audio_features[:1], audio_features]).to(param.device, param.dtype)
        produced, index, audio_start = 0, 0, 0
        colour_map = None
        while produced < num_frames:
            started = time.perf_counter()
            known = motion.shape[2]
            windows = self._audio_windows(padded, audio_start, window_latents)
            shape = (1, motion.shape[1], window_latents, motion.shape[3], motion.shape[4])
            x = torch.randn(shape, generator=generator).to(param.device)
            steps = self.settings.steps
            chunk_conds = conditions.variants(windows, list(ConditionVariant))
            passes = 0
            for i in range(steps):
                x[:, :, :known] = motion.float()
                t = torch.full((1, window_latents), timesteps[i], device=param.device)
                t[:, :known] = 0.0
                predictions = {}
                for variant in self.guidance.variants_for_step(i, steps):
                    cond = chunk_conds[variant]
                    if check_interrupt is not None:
                        check_interrupt()
                    with torch.no_grad():
                        predictions[variant] = self.dit(x.to(param.dtype), t, cond, attention=Bidirectional()).float()
                    passes += 1
                velocity = self.guidance.combine(predictions, i, steps)
                x = flow.euler_step(x, velocity, timesteps[i], timesteps[i + 1])
            x[:, :, :known] = motion.float()
            with torch.no_grad():
                vae_input = self.vae.denormalise(x.to(next(self.vae.parameters()).dtype))
                video = decode_as_stream(self.vae, vae_input).clamp(-1.0, 1.0)
            if self.settings.colour_match:
                if colour_map is None:
                    colour_map = fit_colour_map(video[0, :, 0], reference.to(video.device, video.dtype))
                video = apply_colour_map(video, colour_map)
            skip = 1 + (known - 1) * self.stride
            new = video[0, :, skip:][:, : num_frames - produced]
            frames = video_to_frames(new)
            produced += frames.shape[0]
            audio_start += self.settings.window_frames - self.settings.motion_frames
            motion = self.vae.encode(video[:, :, -self.settings.motion_frames:]).to(param.dtype)
            yield WindowOutput(index, frames, passes, time.perf_counter() - started)
            index += 1

    def _audio_windows(self, padded: torch.Tensor, start: int, latents: int):
        """Audio windows of a window whose first video frame is `start` (MultiTalk layout)."""
        cfg = self.dit.cfg.audio
        span = padded[start:]
        if len(span) == 0:
            span = padded[-1:]
        return first_frame_window(span, cfg)[None], latent_frame_windows(span, range(1, latents), cfg)[None]

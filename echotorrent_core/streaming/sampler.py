"""The streaming chunk loop: reference portrait + audio features -> decoded video frames, chunk after chunk.

Timeline. The portrait is VAE-encoded to one latent frame, written once into the KV cache as the attention sink
(latent frame 0, t = 0) and decoded once to warm the streaming VAE cache (that frame is not output; with
`settings.colour_match` it also gives the colour map every decoded chunk goes through, `media.colour_map`). Generated
latent frame j >= 1 decodes to output video frames 4(j-1) .. 4(j-1)+3. Audio rows are aligned MultiTalk-style with
video frame 0 being the portrait: the features are read as if their first row were repeated in front, so output
frame v reads row v + 1 (each chunk gathers its own windows; the features are not copied). Each chunk of
`chunk_frames` latent frames is denoised in `steps` passes (times the guidance passes), committed to the context
with one clean pass (so a chunk costs `steps x guidance passes + 1` DiT passes), decoded, trimmed to the audio
length and yielded.
Cost and memory per chunk are constant with `CachedContext` and a finite window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..guidance import ConditionVariant, GuidancePolicy
from ..media.colour_map import apply_colour_map, fit_colour_map
from ..media.finite import all_finite
from ..media.frames import video_to_frames
from ..models.audio_windows import first_frame_rows, latent_frame_rows
from ..models.vae import StreamingDecoder
from .context import CachedContext, RecomputedContext
from .denoise import ChunkDenoiser, NullConditions
from .image_condition import ImageCondition
from .settings import StreamSettings


@dataclass(frozen=True)
class ChunkOutput:
    """One streamed chunk: frames `[T, H, W, 3]` float in [0, 1] on the CPU, its latents `[1, C, n, h, w]`,
    the index of its first output frame, its wall time and its network passes: `passes` counts every DiT pass
    the chunk cost (`steps x guidance passes` to denoise + `commit_passes`, the clean pass at t = 0 that writes
    the KV cache: 1 with the cache, 0 when recomputing the prefix); `passes_per_step` is the denoising passes per
    step (the guidance passes)."""

    index: int
    first_frame: int
    frames: torch.Tensor
    latents: torch.Tensor
    passes: int
    passes_per_step: float
    seconds: float
    commit_passes: int

    @property
    def denoise_passes(self) -> int:
        return self.passes - self.commit_passes

    @property
    def passes_per_frame(self) -> float:
        """Network passes per output frame of this chunk (the cache-writing pass included)."""
        return self.passes / max(self.frames.shape[0], 1)


@dataclass
class _StreamState:
    """Everything one stream carries from chunk to chunk."""

    latent_shape: torch.Size
    audio_features: torch.Tensor | None  # the caller's `[T_video, L, C]`, where it is (not copied)
    image_condition: ImageCondition | None
    conditions: NullConditions
    context: CachedContext | RecomputedContext
    decoder: StreamingDecoder
    denoiser: ChunkDenoiser
    colour_map: torch.Tensor | None  # `[4, 3]` (settings.colour_match) or None


class StreamingSampler:
    """Owns the stream state (context, decoder cache, noise generator); the models stay stateless."""

    def __init__(
        self,
        dit: torch.nn.Module,
        vae: torch.nn.Module,
        settings: StreamSettings = StreamSettings(),
        guidance: GuidancePolicy | None = None,
        use_cache: bool = True,
    ) -> None:
        self.dit = dit
        self.vae = vae
        self.settings = settings
        self.guidance = guidance or GuidancePolicy()
        self.use_cache = use_cache
        self.temporal_stride = vae.cfg.temporal_stride
        self.spatial_stride = vae.cfg.spatial_stride
        self._cached_reference: tuple[torch.Tensor, torch.Tensor] | None = None  # (pixels, latent)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.dit.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    def num_chunks(self, num_frames: int) -> int:
        """Chunks needed to cover `num_frames` output video frames."""
        latent_frames = math.ceil(num_frames / self.temporal_stride)
        return math.ceil(latent_frames / self.settings.chunk_frames)

    def stream(
        self,
        reference: torch.Tensor,
        audio_features: torch.Tensor | None,
        text: torch.Tensor | None = None,
        negative_text: torch.Tensor | None = None,
        num_frames: int | None = None,
        check_interrupt: Callable[[], None] | None = None,
        clip_fea: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> Iterator[ChunkOutput]:
        """Yield the video chunk by chunk.

        reference `[3, H, W]` in [-1, 1] (H, W multiples of 16); audio_features `[T_video, layers, dim]` one row per
        output frame (None only for a model without audio layers, then `num_frames` is required); text
        `[1, L, text_dim]` (None = empty text); negative_text the null text for text CFG (None = zeros);
        num_frames output frames (default: the audio's). `check_interrupt` is called before every network pass
        and may raise to stop the stream. I2V checkpoints (in_dim 36, CLIP branch) also need `clip_fea`
        `[1, 257, image_dim]` (CLIP ViT-H penultimate features of the portrait). `region_mask` `[H, W]` in [0, 1]
        marks the face / mouth on the output frame for the guidance schedule's spatial weight (None = its default
        ellipse); a mask the guidance would ignore is an error.
        """
        num_frames = self._resolve_frames(audio_features, num_frames)
        state = self._start(reference, audio_features, text, negative_text, num_frames, check_interrupt, clip_fea,
                            region_mask)
        for index in range(self.num_chunks(num_frames)):
            yield self._next_chunk(state, index, num_frames)

    @torch.no_grad()
    def _start(self, reference: torch.Tensor, audio_features: torch.Tensor | None, text: torch.Tensor | None,
               negative_text: torch.Tensor | None, num_frames: int,
               check_interrupt: Callable[[], None] | None, clip_fea: torch.Tensor | None,
               region_mask: torch.Tensor | None) -> _StreamState:
        """Encode the portrait, write it as the sink and warm the streaming decoder."""
        pixels = self._reference_pixels(reference)
        latent_ref = self._encode_reference(pixels)
        if region_mask is not None:
            region_mask = region_mask.to(self.device)
            self.guidance.check_region_mask(region_mask, tuple(latent_ref.shape[-2:]))
        image_condition = None
        if self.dit.cfg.in_dim > self.dit.cfg.out_dim:
            image_condition = ImageCondition(self.vae, pixels, self.dtype)
        conditions = self._conditions(text, negative_text, clip_fea)
        stream_frames = self.num_chunks(num_frames) * self.settings.chunk_frames
        context = self._make_context(latent_ref.shape[-2:], stream_frames)
        decoder = StreamingDecoder(self.vae)
        generator = torch.Generator().manual_seed(self.settings.seed)
        denoiser = ChunkDenoiser(context, self.guidance, self.settings, conditions, generator, check_interrupt,
                                 region_mask)
        sink_y = None if image_condition is None else image_condition.sink
        context.begin(latent_ref, conditions.for_frames(self._sink_audio(audio_features)), sink_y)
        decoded_portrait = decoder.decode_chunk(latent_ref.to(self._vae_dtype))
        colour_map = None
        if self.settings.colour_match:
            colour_map = fit_colour_map(decoded_portrait[0, :, 0].clamp(-1, 1), pixels[0, :, 0])
        return _StreamState(latent_ref.shape, audio_features, image_condition, conditions, context, decoder, denoiser,
                            colour_map)

    @torch.no_grad()
    def _next_chunk(self, state: _StreamState, index: int, num_frames: int) -> ChunkOutput:
        """Denoise, commit and decode chunk `index`; frames past `num_frames` are dropped."""
        started = time.perf_counter()
        n = self.settings.chunk_frames
        frame_start = self.settings.sink_frames + index * n
        audio = self._chunk_audio(state.audio_features, range(frame_start, frame_start + n))
        y = None if state.image_condition is None else state.image_condition.for_frames(frame_start, n)
        conditions = state.denoiser.chunk_conditions(audio)
        x0, passes = state.denoiser.denoise(state.latent_shape, frame_start, conditions, y)
        state.context.commit(x0, conditions[ConditionVariant.FULL], frame_start, y)
        video = state.decoder.decode_chunk(x0.to(self._vae_dtype))
        if state.colour_map is not None:
            video = apply_colour_map(video, state.colour_map)
        first = index * n * self.temporal_stride
        keep = min(video.shape[2], num_frames - first)
        frames = video_to_frames(video[0, :, :keep])
        commit = state.context.commit_passes
        return ChunkOutput(index, first, frames, x0.cpu(), passes + commit, passes / self.settings.steps,
                           time.perf_counter() - started, commit)

    @property
    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _resolve_frames(self, audio_features: torch.Tensor | None, num_frames: int | None) -> int:
        if audio_features is None:
            if self.dit.cfg.audio is not None:
                raise ValueError("this model is audio-driven: audio_features [T_video, layers, dim] are required")
            if num_frames is None:
                raise ValueError("without audio, num_frames must be given")
        else:
            audio_cfg = self.dit.cfg.audio
            if audio_cfg is None:
                raise ValueError("this model has no audio layers; pass audio_features=None")
            expected = (audio_cfg.encoder_layers, audio_cfg.audio_dim)
            if audio_features.ndim != 3 or tuple(audio_features.shape[1:]) != expected or len(audio_features) == 0:
                raise ValueError(
                    f"audio_features must be [T_video >= 1, {expected[0]}, {expected[1]}] (one row per video frame), "
                    f"got {tuple(audio_features.shape)}"
                )
            if not all_finite(audio_features, dim=0):  # in spans: no full-size copy of long features
                raise ValueError("audio_features contain NaN or infinite values")
            num_frames = len(audio_features) if num_frames is None else num_frames
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        return num_frames

    def reference_latent(self, reference: torch.Tensor) -> torch.Tensor:
        """The portrait `[3, H, W]` in [-1, 1] as the stream's sink latent `[1, C, 1, H/8, W/8]` (the first frame of
        the stream's latent video; encoded once per sampler and portrait)."""
        with torch.no_grad():
            return self._encode_reference(self._reference_pixels(reference))

    def _encode_reference(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._cached_reference is None or not torch.equal(self._cached_reference[0], pixels):
            self._cached_reference = (pixels, self.vae.encode(pixels).to(self.dtype))
        return self._cached_reference[1]

    def _reference_pixels(self, reference: torch.Tensor) -> torch.Tensor:
        """Validate the portrait `[3, H, W]` in [-1, 1] -> `[1, 3, 1, H, W]` on the device in the VAE's dtype."""
        multiple = self.spatial_stride * self.dit.cfg.patch_size[1]
        if reference.ndim != 3 or reference.shape[0] != 3:
            raise ValueError(f"reference must be an RGB image [3, H, W] in [-1, 1], got {tuple(reference.shape)}")
        if reference.shape[1] % multiple or reference.shape[2] % multiple:
            raise ValueError(f"reference height and width must be multiples of {multiple}, got {tuple(reference.shape[1:])}")
        if not torch.isfinite(reference).all():
            raise ValueError("reference image contains NaN or infinite values")
        return reference.to(self.device, self._vae_dtype)[None, :, None]

    def _conditions(self, text: torch.Tensor | None, negative_text: torch.Tensor | None,
                    clip_fea: torch.Tensor | None) -> NullConditions:
        to_model = (lambda v: None if v is None else v.to(self.device, self.dtype))
        positive = self.dit.prepare_conditioning(text=self._text_or_zeros(to_model(text)), clip_fea=to_model(clip_fea))
        negative = self.dit.prepare_conditioning(text=self._text_or_zeros(to_model(negative_text)),
                                                 clip_fea=to_model(clip_fea))
        return NullConditions(self.dit, positive, negative)

    def _text_or_zeros(self, text: torch.Tensor | None) -> torch.Tensor:
        cfg = self.dit.cfg
        if text is None:
            return torch.zeros(1, cfg.text_len, cfg.text_dim, device=self.device, dtype=self.dtype)
        if text.ndim == 2:
            text = text[None]
        return text

    def _sink_audio(self, features: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if features is None:
            return None, None
        rows = first_frame_rows(features.shape[0] + 1, self.dit.cfg.audio)[None]
        return self._portrait_led_windows(features, rows)[None], None

    def _chunk_audio(self, features: torch.Tensor | None, frames: range) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if features is None:
            return None, None
        return None, self._portrait_led_windows(features, latent_frame_rows(features.shape[0] + 1, frames,
                                                                            self.dit.cfg.audio))[None]

    def _portrait_led_windows(self, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Rows `[n, window]` of `[features[0], features...]` (the portrait's frame 0 hears the first audio row,
        as in training) gathered from features `[T_video, L, C]` -> `[n, window, L, C]` on the DiT's device and
        dtype. Only the windows are copied: the stream holds no copy of its features (wav2vec2-base: 37 KB per
        frame, 166 MB for 3 minutes)."""
        return features[(rows - 1).clamp(min=0).to(features.device)].to(self.device, self.dtype)

    def _make_context(self, latent_hw: tuple[int, int], stream_frames: int) -> CachedContext | RecomputedContext:
        if self.use_cache:
            return CachedContext(self.dit, self.settings, tuple(latent_hw), stream_frames, self.dtype, self.device)
        return RecomputedContext(self.dit, self.settings)

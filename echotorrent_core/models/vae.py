"""Wan2.1 causal 3D VAE with the native Wan parameter names, and streaming encoder / decoder.

Layout (native names, as in the public `wan/modules/vae.py` and ComfyUI's `wan_2.1_vae.safetensors`):
`encoder.conv1`, `encoder.downsamples.N` (per level `num_res_blocks` residual blocks then a `Resample`, flat),
`encoder.middle.{0,1,2}` (residual, attention, residual), `encoder.head.{0,2}` (norm, conv to `2 * z_dim`),
`conv1` (1x1x1 on the posterior), `conv2` (1x1x1 on the latents), `decoder.conv1`, `decoder.middle.{0,1,2}`,
`decoder.upsamples.N` (per level `num_res_blocks + 1` residual blocks then a `Resample`, flat), `decoder.head.{0,2}`.

Video `[B, 3, T, H, W]` in [-1, 1] with `T = 1 + s * k` (s = temporal stride, 4) maps to latents
`[B, z, 1 + k, H / 8, W / 8]`. Encoding runs the first frame, then groups of s frames; decoding runs one latent at
a time (first latent -> 1 frame, then s frames each), all through a causal feature cache, as the public code does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import VAEConfig
from .vae_blocks import AttentionBlock, CausalConv3d, Resample, ResidualBlock, RMSNorm
from .vae_cache import FeatureCache


def _middle(dim: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


def _head(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim), nn.SiLU(), CausalConv3d(dim, out_channels, 3, padding=1))


def _run_middle(x: torch.Tensor, middle: nn.Sequential, cache: FeatureCache) -> torch.Tensor:
    first, attention, second = middle
    return second(attention(first(x, cache)), cache)


def _run_head(x: torch.Tensor, head: nn.Sequential, cache: FeatureCache) -> torch.Tensor:
    norm, act, conv = head
    return conv(act(norm(x)), cache)


class Encoder3d(nn.Module):
    """Pixels `[B, 3, t, H, W]` -> posterior parameters `[B, 2 * z_dim, t', H / 8, W / 8]`, one step at a time."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        last_level = len(cfg.dim_mult) - 1
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for block in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim if block == 0 else out_dim, out_dim))
            if level != last_level:
                layers.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[level] else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)
        self.middle = _middle(dims[-1])
        self.head = _head(dims[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """One encoding step (the first frame, or the next `temporal_stride` frames)."""
        cache.begin_step()
        x = self.conv1(x, cache)
        for layer in self.downsamples:
            x = layer(x, cache)
        return _run_head(_run_middle(x, self.middle, cache), self.head, cache)


class Decoder3d(nn.Module):
    """Latents `[B, z_dim, n, h, w]` -> pixels `[B, 3, frames, 8h, 8w]`, one step at a time."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.base_dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = tuple(reversed(cfg.temporal_downsample))
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        layers: list[nn.Module] = []
        last_level = len(cfg.dim_mult) - 1
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if level > 0:
                in_dim //= 2  # the previous level's upsampler halves the channels
            for block in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim if block == 0 else out_dim, out_dim))
            if level != last_level:
                layers.append(Resample(out_dim, "upsample3d" if temporal_upsample[level] else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = _head(dims[-1], 3)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """One decoding step: the first latent of a stream -> 1 frame; then n latents -> `temporal_stride` * n frames."""
        cache.begin_step()
        x = _run_middle(self.conv1(x, cache), self.middle, cache)
        for layer in self.upsamples:
            x = layer(x, cache)
        return _run_head(x, self.head, cache)


def _validate_config(cfg: VAEConfig) -> None:
    levels = len(cfg.dim_mult)
    if levels < 2 or len(cfg.temporal_downsample) != levels - 1:
        raise ValueError(
            f"expected at least 2 dim_mult levels and one temporal_downsample flag per level transition, got "
            f"dim_mult={cfg.dim_mult}, temporal_downsample={cfg.temporal_downsample}"
        )
    if len(cfg.latents_mean) != cfg.z_dim or len(cfg.latents_std) != cfg.z_dim:
        raise ValueError(
            f"expected latents_mean and latents_std of length z_dim={cfg.z_dim}, got "
            f"{len(cfg.latents_mean)} and {len(cfg.latents_std)}"
        )
    if cfg.base_dim <= 0 or cfg.z_dim <= 0 or cfg.num_res_blocks <= 0:
        raise ValueError(f"expected positive base_dim, z_dim and num_res_blocks, got {cfg}")
    if cfg.decode_context_latents < 0 or cfg.encode_context_latents < 0:
        raise ValueError(f"expected decode_ / encode_context_latents >= 0 (0: the whole causal history), got {cfg}")


# Latents decoded per decoder call after a stream's first latent: a streamed chunk (3 latents) in one call.
DECODE_LATENTS_PER_CALL = 3
# Context-bounded encoding (`WanVAE.moments`): windows encoded per encoder call (peak memory grows with it).
ENCODE_WINDOWS_PER_CALL = 8


class WanVAE(nn.Module):
    """Wan2.1 video VAE. Latents are normalised per channel as `(mu - latents_mean) / latents_std`."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        _validate_config(cfg)
        self.cfg = cfg
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        stats_shape = (1, cfg.z_dim, 1, 1, 1)
        self.register_buffer("latents_mean", torch.tensor(cfg.latents_mean).view(stats_shape), persistent=False)
        self.register_buffer("latents_std", torch.tensor(cfg.latents_std).view(stats_shape), persistent=False)

    def normalise(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw posterior mean -> normalised latents (same shape `[B, z, F, h, w]`)."""
        return (mu - self.latents_mean.to(mu)) / self.latents_std.to(mu)

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw latents (same shape)."""
        return latents * self.latents_std.to(latents) + self.latents_mean.to(latents)

    def check_video(self, video: torch.Tensor) -> None:
        """Raise ValueError unless `video` is `[B, 3, 1 + s * k, H, W]` with H, W divisible by the spatial stride."""
        stride_t, stride_s = self.cfg.temporal_stride, self.cfg.spatial_stride
        if video.ndim != 5 or video.shape[1] != 3 or not video.is_floating_point():
            raise ValueError(f"expected a float video [B, 3, T, H, W], got {video.dtype} {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if frames < 1 or (frames - 1) % stride_t != 0:
            raise ValueError(f"expected T = 1 + {stride_t} * k frames, got T = {frames}")
        if height == 0 or width == 0 or height % stride_s != 0 or width % stride_s != 0:
            raise ValueError(f"expected H and W to be positive multiples of {stride_s}, got {height}x{width}")

    def check_latents(self, latents: torch.Tensor) -> None:
        """Raise ValueError unless `latents` is a float `[B, z_dim, n >= 1, h, w]` tensor."""
        if latents.ndim != 5 or latents.shape[1] != self.cfg.z_dim or not latents.is_floating_point():
            raise ValueError(
                f"expected float latents [B, {self.cfg.z_dim}, n, h, w], got {latents.dtype} {tuple(latents.shape)}"
            )
        if min(latents.shape[2:]) < 1:
            raise ValueError(f"expected at least one latent frame and a non-empty grid, got {tuple(latents.shape)}")

    def moments_steps(self, video: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """Posterior moments (mean and log-variance, raw) of `video` `[B, 3, t, H, W]`, continuing the stream held
        in `cache`: `[B, 2z, latents, H/8, W/8]`, one latent per step.

        A new stream (empty cache) encodes its first frame alone, then groups of `temporal_stride` frames, as the
        public Wan code does; a continued stream takes groups only. `t` must be `1 + 4k` for a new stream and `4k`
        when continuing (4 = `temporal_stride`).
        """
        stride = self.cfg.temporal_stride
        first = 1 if cache.is_empty else 0
        if video.shape[2] == 0 or (video.shape[2] - first) % stride:
            expected = f"1 + {stride} * k" if first else f"{stride} * k"
            raise ValueError(f"expected T = {expected} frames for this step of the stream, got T = {video.shape[2]}")
        steps = [video[:, :, :first]] if first else []
        steps += [video[:, :, t : t + stride] for t in range(first, video.shape[2], stride)]
        return self.conv1(torch.cat([self.encoder(step, cache) for step in steps], dim=2))

    def encode_steps(self, video: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """Posterior mean (raw) of `moments_steps`: `[B, z, latents, H/8, W/8]`."""
        return self.moments_steps(video, cache)[:, : self.cfg.z_dim]

    def moments(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior moments `[B, 2z, 1 + (T-1)/4, H/8, W/8]` of a whole video `[B, 3, T, H, W]` (a new stream).

        With `cfg.encode_context_latents = K > 0` latent t > K is encoded from a fresh cache over frames
        `4 (t - K) .. 4 t` (its own 4 frames after K latents' worth, the first of them encoded alone) and kept as
        the last latent of that window; latents 0..K are the usual causal ones. Every latent then sees the history
        an encoder trained on `1 + 4K`-frame windows was trained with, however long the video. Windows are encoded
        in batches of `ENCODE_WINDOWS_PER_CALL`.
        """
        context = self.cfg.encode_context_latents
        span = 1 + self.cfg.temporal_stride * context
        if not context or video.shape[2] <= span:
            return self.moments_steps(video, FeatureCache())
        head = self.moments_steps(video[:, :, :span], FeatureCache())
        stride, batch = self.cfg.temporal_stride, video.shape[0]
        starts = range(stride, video.shape[2] - span + 1, stride)
        tails = []
        for group in range(0, len(starts), ENCODE_WINDOWS_PER_CALL):
            chosen = starts[group : group + ENCODE_WINDOWS_PER_CALL]
            windows = torch.cat([video[:, :, s : s + span] for s in chosen], dim=0)
            last = self.moments_steps(windows, FeatureCache())[:, :, -1:]
            tails.append(torch.cat(last.split(batch, dim=0), dim=2))
        return torch.cat([head, *tails], dim=2)

    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior mean without normalisation: `[B, 3, T, H, W]` in [-1, 1] -> `[B, z, 1 + (T-1)/4, H/8, W/8]`."""
        self.check_video(video)
        return self.moments(video)[:, : self.cfg.z_dim]

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised latents (posterior mean, no sampling): `[B, 3, T, H, W]` -> `[B, z, 1 + (T-1)/4, H/8, W/8]`."""
        return self.normalise(self.encode_raw(video))

    def decode_steps(
        self, raw_latents: torch.Tensor, cache: FeatureCache, latents_per_call: int = DECODE_LATENTS_PER_CALL
    ) -> torch.Tensor:
        """Decode raw latents `[B, z, n, h, w]`, continuing the stream held in `cache`.

        The first latent of a stream is decoded alone (it gives one frame); after it, up to `latents_per_call`
        latents go through the decoder at once: every decoder layer is causal in time or frame-local, so this
        equals latent-by-latent decoding while making larger, faster convolutions (peak activation memory grows
        with `latents_per_call`). Returns unclamped pixels `[B, 3, frames, 8h, 8w]`: `1 + 4 (n - 1)` frames when
        the cache is empty (a new stream), else `4 n` (4 = `cfg.temporal_stride`).
        """
        if latents_per_call < 1:
            raise ValueError(f"latents_per_call must be >= 1, got {latents_per_call}")
        x = self.conv2(raw_latents)
        outputs = []
        if cache.is_empty:
            outputs.append(self.decoder(x[:, :, :1], cache))
            x = x[:, :, 1:]
        outputs.extend(self.decoder(group, cache) for group in x.split(latents_per_call, dim=2) if group.shape[2])
        return torch.cat(outputs, dim=2)

    def decode_raw(self, raw_latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Raw (unnormalised) latents `[B, z, n, h, w]` -> video `[B, 3, 1 + 4 (n-1), 8h, 8w]`, clamped to [-1, 1]
        unless `clamp` is False (e.g. to keep gradients when fine-tuning the decoder)."""
        self.check_latents(raw_latents)
        video = self.decode_steps(raw_latents, FeatureCache())
        return video.clamp(-1.0, 1.0) if clamp else video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents `[B, z, n, h, w]` -> video `[B, 3, 1 + 4 (n-1), 8h, 8w]` clamped to [-1, 1]."""
        self.check_latents(latents)
        return self.decode_raw(self.denormalise(latents))


class _CausalStream:
    """The state a streamed VAE direction carries across calls: the causal feature cache and the stream's grid."""

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self.cache = FeatureCache()
        self._grid: tuple[int, int, int] | None = None

    @property
    def started(self) -> bool:
        """Whether a chunk has gone through since construction or the last `reset`."""
        return not self.cache.is_empty

    def reset(self) -> None:
        """Start a new stream (the next chunk is the first one again)."""
        self.cache.reset()
        self._grid = None

    def _check_grid(self, grid: tuple[int, int, int], what: str) -> None:
        """Raise unless `grid` (B, h, w) is the stream's (any grid before the first chunk has gone through)."""
        if self._grid is not None and grid != self._grid:
            raise ValueError(
                f"a stream keeps its batch size and {what} (B, h, w) = {self._grid}, got {grid}; call reset() "
                "to start a new stream"
            )


class StreamingDecoder(_CausalStream):
    """Decodes a latent stream chunk by chunk, at the same cost per chunk however many chunks came before.

    With `context_latents = 0` (the VAE config's `decode_context_latents` unless given) the causal feature cache
    (the last <= 2 input frames of every causal decoder layer) is carried across calls and the concatenated chunks
    equal `WanVAE.decode` of the whole stream. With `context_latents = K > 0` every chunk after the first is decoded
    from a fresh cache after its K previous latents, and only the chunk's own frames are kept: the decoder then never
    runs on more than `K + chunk` latents of history, the length it can be trained on, however long the stream
    (a decoder trained on short windows drifts on longer causal histories). Run under `torch.no_grad()` /
    `torch.inference_mode()` when streaming, or the cache links every chunk's autograd graph to the previous one.
    """

    def __init__(self, vae: WanVAE, context_latents: int | None = None) -> None:
        super().__init__(vae)
        context = vae.cfg.decode_context_latents if context_latents is None else context_latents
        if context < 0:
            raise ValueError(f"context_latents must be >= 0 (0: the whole causal history), got {context}")
        self.context_latents = context
        self._history: torch.Tensor | None = None  # the last K raw latents [B, z, <=K, h, w] (bounded mode)

    @property
    def started(self) -> bool:
        """Whether a chunk has gone through since construction or the last `reset`."""
        return self._history is not None if self.context_latents else not self.cache.is_empty

    def reset(self) -> None:
        """Start a new stream (the next chunk is the first one again)."""
        super().reset()
        self._history = None

    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents `[B, z, n, h, w]` -> frames `[B, 3, frames, 8h, 8w]` in [-1, 1].

        `frames` is `1 + 4 (n - 1)` for the first chunk of a stream and `4 n` afterwards. Batch size and latent
        grid must stay the same within a stream.
        """
        self.vae.check_latents(latents)
        return self.decode_chunk_raw(self.vae.denormalise(latents)).clamp(-1.0, 1.0)

    def decode_chunk_raw(self, raw_latents: torch.Tensor) -> torch.Tensor:
        """As `decode_chunk` for raw (unnormalised) latents, unclamped: the path a decoder is trained through."""
        self.vae.check_latents(raw_latents)
        grid = (raw_latents.shape[0], raw_latents.shape[3], raw_latents.shape[4])
        self._check_grid(grid, "latent grid")
        if self.context_latents:
            video = self._decode_bounded(raw_latents)
        else:
            video = self.vae.decode_steps(raw_latents, self.cache)
        self._grid = grid
        return video

    def _decode_bounded(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latents `[B, z, n, h, w]` decoded from a fresh cache after the kept history; the chunk's frames."""
        window = raw if self._history is None else torch.cat([self._history, raw], dim=2)
        video = self.vae.decode_steps(window, FeatureCache())
        if self._history is not None:
            video = video[:, :, -self.vae.cfg.temporal_stride * raw.shape[2] :]
        self._history = window[:, :, -self.context_latents :]
        return video


def decode_as_stream(vae: WanVAE, raw_latents: torch.Tensor, chunk: int = DECODE_LATENTS_PER_CALL,
                     context_latents: int | None = None) -> torch.Tensor:
    """Raw latents `[B, z, n, h, w]` -> unclamped frames `[B, 3, 1 + 4 (n - 1), 8h, 8w]`, decoded as a stream is:
    latent 0 alone, then chunks of `chunk` latents through `StreamingDecoder(vae, context_latents)` (default: the
    VAE config's bound). Without a bound this equals `decode_steps` from an empty cache."""
    decoder = StreamingDecoder(vae, context_latents=context_latents)
    pieces = [decoder.decode_chunk_raw(raw_latents[:, :, :1])]
    pieces += [decoder.decode_chunk_raw(raw_latents[:, :, start : start + chunk])
               for start in range(1, raw_latents.shape[2], chunk)]
    return torch.cat(pieces, dim=2)


class StreamingEncoder(_CausalStream):
    """Encodes a video stream chunk by chunk; the concatenated latents equal `WanVAE.encode` of the whole video.

    The first chunk of a stream holds `1 + 4k` frames (its first frame gives the first latent alone), every later
    chunk `4k` frames (one latent per 4 frames; 4 = `temporal_stride`). The encoder's causal feature cache (the last
    <= 2 input frames of every causal layer) is carried across calls, so a chunk costs the same however long the
    stream already is; with the VAE config's `encode_context_latents = K > 0` the last `1 + 4K` frames are kept
    instead and each chunk is encoded as `WanVAE.moments` encodes it. Run under `torch.no_grad()` when streaming
    (see `StreamingDecoder`).
    """

    def __init__(self, vae: WanVAE) -> None:
        super().__init__(vae)
        self._frames: torch.Tensor | None = None  # bounded mode: the last <= 1 + 4K frames `[B, 3, f, H, W]`

    @property
    def started(self) -> bool:
        """Whether a chunk has gone through since construction or the last `reset`."""
        return self._frames is not None or not self.cache.is_empty

    def reset(self) -> None:
        """Start a new stream (the next chunk is the first one again)."""
        super().reset()
        self._frames = None

    def encode_chunk_raw(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels `[B, 3, t, H, W]` in [-1, 1] -> raw latents `[B, z, n, H/8, W/8]`: `n = 1 + (t-1)/4` for the first
        chunk of a stream, `t/4` afterwards. Batch size and frame size must stay the same within a stream."""
        if video.ndim != 5 or video.shape[1] != 3 or not video.is_floating_point():
            raise ValueError(f"expected a float video chunk [B, 3, t, H, W], got {video.dtype} {tuple(video.shape)}")
        stride_s = self.vae.cfg.spatial_stride
        grid = (video.shape[0], video.shape[3], video.shape[4])
        if grid[1] == 0 or grid[2] == 0 or grid[1] % stride_s or grid[2] % stride_s:
            raise ValueError(f"expected H and W to be positive multiples of {stride_s}, got {grid[1]}x{grid[2]}")
        self._check_grid(grid, "frame size")
        context = self.vae.cfg.encode_context_latents
        if not context:
            latents = self.vae.encode_steps(video, self.cache)
        else:
            latents = self._encode_bounded(video, context)
        self._grid = grid
        return latents

    def _encode_bounded(self, video: torch.Tensor, context: int) -> torch.Tensor:
        """Latents of the chunk `video`, each encoded after (at most) `context` latents' frames of history."""
        stride = self.vae.cfg.temporal_stride
        if self._frames is None:
            self.vae.check_video(video)
            stream = video
        else:
            if video.shape[2] == 0 or video.shape[2] % stride:
                raise ValueError(f"expected T = {stride} * k frames for this step of the stream, got T = "
                                 f"{video.shape[2]}")
            stream = torch.cat([self._frames, video], dim=2)
        known = 0 if self._frames is None else (self._frames.shape[2] - 1) // stride + 1
        latents = self.vae.moments(stream)[:, : self.vae.cfg.z_dim, known:]
        self._frames = stream[:, :, -(1 + stride * context) :]
        return latents

    def encode_chunk(self, video: torch.Tensor) -> torch.Tensor:
        """As `encode_chunk_raw`, normalised (the latents `WanVAE.encode` gives)."""
        return self.vae.normalise(self.encode_chunk_raw(video))

"""Image-to-video condition channels for Wan2.1 I2V checkpoints (in_dim 36 = 16 noise + 4 mask + 16 condition).

Wan I2V conditions a clip on `y = cat(mask, vae.encode([portrait, zero frames...]))`: the 4 mask channels (one per
video frame folded into a latent frame) are 1 on the portrait's latent frame and 0 elsewhere, and the condition
latent of latent frame j is the causal encoder's output for the portrait followed by 4j - 3 .. 4j zero (mid-grey)
frames. The encoder's receptive field spans many latent frames, so these latents differ from frame to frame for
a long time. When streaming, the portrait is the sink frame (latent frame 0) and the generated frames' latents are
encoded incrementally, chunk by chunk, with a `StreamingEncoder` over the zero frames: the same numbers as one
encode of the whole [portrait, zeros...] clip at a constant cost per chunk.

Once a step leaves every cached history of the encoder bit-identical to the previous step's, the encoder has
reached its fixed point (same zero input, same state): every later latent equals the last one, encoding stops and
the encoder's cache is freed (measured: latent frame 29 on the full Wan2.1 VAE architecture, about 10 chunks).
Before that, a chunk costs one encoder pass over `4 * chunk_frames` frames at the output resolution, and the
cache holds the last 2 input frames of every causal layer (at 480x832 in bf16 a few hundred MB, like the decoder's).
"""

from __future__ import annotations

import torch

from ..models.vae import StreamingEncoder, WanVAE


class ImageCondition:
    """The i2v condition channels of one stream: `sink` `[1, 4 + z, 1, h, w]` and `for_frames(start, count)`.

    Latent frames are asked for in stream order (each call starts where the previous one ended; asking for the
    same frames again returns them again), as the chunk loop does.
    """

    def __init__(self, vae: WanVAE, pixels: torch.Tensor, dtype: torch.dtype) -> None:
        """pixels `[1, 3, 1, H, W]` in [-1, 1] (the portrait, in the VAE's dtype and device); `dtype` of the output."""
        self.dtype = dtype
        self._stride = vae.cfg.temporal_stride
        self._encoder = StreamingEncoder(vae)
        self._zeros = pixels.new_zeros(pixels.shape[0], 3, self._stride, *pixels.shape[3:])
        latent = self._encoder.encode_chunk(pixels).to(dtype)
        mask = latent.new_ones(latent.shape[0], self._stride, 1, *latent.shape[3:])
        self.sink = torch.cat([mask, latent], dim=1)
        self._next_frame = 1
        self._encoded = 0  # latent frames after the portrait encoded so far
        self._last: tuple[int, int, torch.Tensor] | None = None
        self._steady: torch.Tensor | None = None
        self.steady_from: int | None = None  # first latent frame of the encoder's fixed point, once reached

    @property
    def next_frame(self) -> int:
        """The latent frame the next `for_frames` call starts at."""
        return self._next_frame

    @property
    def cached_elements(self) -> int:
        """Elements held in the encoder's feature cache (0 once the fixed point is reached)."""
        return self._encoder.cache.numel()

    def for_frames(self, start: int, count: int) -> torch.Tensor:
        """Condition channels of latent frames `start .. start + count - 1` (frame 0 is the portrait): `[1, 4 + z,
        count, h, w]`, mask 0, the condition latents of [portrait, zeros...] at those frames."""
        if self._last is not None and (start, count) == self._last[:2]:
            return self._last[2]
        if count < 1 or start != self._next_frame:
            raise ValueError(
                f"condition frames are produced in stream order: expected start={self._next_frame} and count >= 1, "
                f"got start={start}, count={count}"
            )
        latents = torch.cat([self._next_latent() for _ in range(count)], dim=2)
        mask = latents.new_zeros(latents.shape[0], self._stride, count, *latents.shape[3:])
        channels = torch.cat([mask, latents], dim=1)
        self._next_frame = start + count
        self._last = (start, count, channels)
        return channels

    def _next_latent(self) -> torch.Tensor:
        """The condition latent `[1, z, 1, h, w]` of the next latent frame (one encoder step of zero frames)."""
        if self._steady is not None:
            return self._steady
        self._encoded += 1
        before = self._encoder.cache.snapshot()
        latent = self._encoder.encode_chunk(self._zeros).to(self.dtype)
        if self._encoder.cache.same_as(before):
            self._steady = latent
            self.steady_from = self._encoded
            self._encoder.reset()  # its histories (full-resolution frames in the first layers) are not needed again
        return latent

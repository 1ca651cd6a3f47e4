"""Building blocks of the Wan2.1 causal 3D VAE, with the native Wan parameter names.

Tensors are `[B, C, T, H, W]`. Causal layers read and update a `FeatureCache` so a video can be processed
step by step (see `vae_cache.py`); 1x1x1 convolutions and per-frame layers need no cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vae_cache import FeatureCache


_NORM_EPS = 1e-12  # F.normalize's default


def _onednn_convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, ...],
                        stride: tuple[int, ...], dilation: tuple[int, ...], groups: int) -> torch.Tensor | None:
    """A float32 CPU convolution (`[B, C, H, W]` or `[B, C, T, H, W]`) run by oneDNN in the channels-last layout;
    None where that path does not apply (another device or dtype, no oneDNN)."""
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()):
        return None
    layout = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    return torch.ops.aten.mkldnn_convolution(
        x.contiguous(memory_format=layout), weight.contiguous(memory_format=layout),
        bias, list(padding), list(stride), list(dilation), groups,
    )


def _as_triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)


class CausalConv3d(nn.Conv3d):
    """Conv3d that pads time only on the past side (`2 * padding[0]` frames) and spatially on both sides.

    With a cache, the past frames are the previous step's input frames (zeros before the stream starts), so
    processing a video step by step equals processing it at once.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pad_t, pad_h, pad_w = _as_triple(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad_h, pad_w))
        self.past_frames = 2 * pad_t

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution itself. float32 on the CPU goes straight to oneDNN: PyTorch's heuristic sends batch-1
        inputs with few channels (e.g. 8 channels x 14 frames x 128 rows) to its im2col fallback, about 10x slower
        for the small VAEs that stream on a CPU. In the channels-last layout oneDNN runs a 12-channel 3x3x3
        convolution at 128 px in half the time (measured on a 2-core AMD EPYC without AVX512-BF16: 6.0 vs 11.7 ms;
        the default model's streamed chunk decode 0.37 vs 0.52 s); its output stays channels-last, so the next
        layers keep the layout. Same result (up to float rounding) and autograd either way."""
        out = _onednn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return out if out is not None else super()._conv_forward(x, weight, bias)

    def convolve(self, x: torch.Tensor, history: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve `x` `[B, C, t, H, W]` after `history` (earlier input frames, at most `past_frames`).

        Only for kernels that span time (`past_frames > 0`); missing past frames are zeros. Returns the output and
        the new history: the last `past_frames` input frames seen so far.
        """
        if history is None and self._takes_single_frame(x):
            return self._single_frame(x), x.clone()
        frames = x if history is None else torch.cat([history.to(x), x], dim=2)
        missing = self.past_frames - (0 if history is None else history.shape[2])
        padded = F.pad(frames, (0, 0, 0, 0, missing, 0)) if missing > 0 else frames
        return super().forward(padded), frames[:, :, -self.past_frames :].clone()

    def _takes_single_frame(self, x: torch.Tensor) -> bool:
        """Whether `x` is one frame whose zero past leaves only the kernel's last temporal tap."""
        return x.shape[2] == 1 and self.past_frames == self.kernel_size[0] - 1 and self.dilation[0] == 1

    def _single_frame(self, x: torch.Tensor) -> torch.Tensor:
        """One frame without history `[B, C_in, 1, H, W] -> [B, C_out, 1, H', W']`: the zero past frames meet every
        temporal tap but the last, so this is a 2D convolution with that tap (the image path: a third of the
        arithmetic of a 3-tap kernel over the padded frames; the same values and gradients)."""
        weight, frame = self.weight[:, :, -1], x[:, :, 0]
        out = _onednn_convolution(frame, weight, self.bias, self.padding[1:], self.stride[1:], self.dilation[1:],
                                  self.groups)
        if out is None:
            out = F.conv2d(frame, weight, self.bias, self.stride[1:], self.padding[1:], self.dilation[1:], self.groups)
        return out.unsqueeze(2)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        """`[B, C_in, t, H, W] -> [B, C_out, t', H', W']`; a cache is used only when the kernel spans time."""
        if cache is None or self.past_frames == 0:
            if self._takes_single_frame(x):
                return self._single_frame(x)
            return super().forward(F.pad(x, (0, 0, 0, 0, self.past_frames, 0)) if self.past_frames else x)
        out, history = self.convolve(x, cache.load())
        cache.store(history)
        return out


class RMSNorm(nn.Module):
    """L2-normalise over channels (dim 1), times `sqrt(C) * gamma`; `gamma` is `[C, 1, 1, 1]` (video) or `[C, 1, 1]`."""

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        # x / max(||x||, 1e-12) as F.normalize, written as a channel sum + rsqrt: ~15x faster on the CPU than the
        # strided vector norm over dim 1.
        inverse_norm = compute.square().sum(dim=1, keepdim=True).clamp_min(_NORM_EPS**2).rsqrt()
        return (compute * inverse_norm).to(x.dtype) * self.scale * self.gamma.to(x.dtype)


class ResidualBlock(nn.Module):
    """`x -> conv(act(norm(conv(act(norm(x)))))) + shortcut(x)` with causal 3x3x3 convolutions.

    Native names: `residual.0` norm, `residual.2` conv, `residual.3` norm, `residual.6` conv (1, 4 are the SiLUs,
    5 the dropout slot), `shortcut` (a 1x1x1 conv when the channel count changes).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """`[B, in_dim, t, H, W] -> [B, out_dim, t, H, W]`."""
        norm1, act1, conv1, norm2, act2, dropout, conv2 = self.residual
        h = conv1(act1(norm1(x)), cache)
        h = conv2(dropout(act2(norm2(h))), cache)
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time), with a residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, t, H, W] -> [B, C, t, H, W]`."""
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(frames)).flatten(2).transpose(1, 2).unsqueeze(1)  # [b*t, 1, h*w, 3c]
        q, k, v = qkv.chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        out = self.proj(attended).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return out + x


class NearestUpsample2x(nn.Module):
    """Per-frame 2x nearest-neighbour upsampling of `[N, C, H, W]` (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest-exact")


class Resample(nn.Module):
    """Spatial (and optionally temporal) 2x down- or upsampling.

    Modes: `downsample2d` / `downsample3d` (`resample.1`: Conv2d stride 2 after a right/bottom zero pad; 3d adds
    `time_conv`, a (3, 1, 1) stride-2 conv over the previous step's last frame and this step's frames, skipped on
    the first step), `upsample2d` / `upsample3d` (`resample.1`: Conv2d to `dim // 2` after nearest 2x; 3d adds
    `time_conv`, a causal (3, 1, 1) conv to `2 * dim` channels whose halves become two frames, skipped on the first
    step so the first latent gives one frame).
    """

    MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown resample mode {mode!r}; expected one of {self.MODES}")
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(NearestUpsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def _per_frame(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        out = self.resample(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)

    def _upsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        history = cache.load()
        if history is None:
            cache.store(x[:, :, :0].clone())
            return x
        out, history = self.time_conv.convolve(x, history)
        cache.store(history)
        b, c, t, h, w = x.shape
        return out.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, t * 2, h, w)

    def _downsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        history = cache.load()
        cache.store(x[:, :, -1:].clone())
        return x if history is None else self.time_conv(torch.cat([history.to(x), x], dim=2))

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """`[B, C, t, H, W] -> [B, C, t', H/2, W/2]` (down) or `[B, C/2, t', 2H, 2W]` (up)."""
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = self._per_frame(x)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

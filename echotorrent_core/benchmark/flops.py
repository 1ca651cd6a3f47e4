"""Compute per output frame, counted (not timed) with torch's FlopCounterMode on meta tensors.

Nothing is allocated or run, so the real presets at full resolution can be counted on any machine. Counts are
matrix-multiply, convolution and attention FLOPs (what FlopCounterMode registers); elementwise work is left out.
Per chunk the streaming sampler makes `steps` passes x guidance passes (single pass here) plus one cache-writing
pass over `chunk_frames` latent frames against a full cache (sink + window); per window the bidirectional baseline makes
`steps` x 3 passes over the whole window. Both decode every latent once (the baseline also re-decodes its motion
latents).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelPreset
from ..models.attention import Bidirectional
from ..models.dit import WanDiT
from ..models.vae import StreamingDecoder, WanVAE
from ..streaming import StreamSettings
from ..windowed import WindowSettings


@dataclass(frozen=True)
class FlopFigures:
    """FLOPs of one pass / decode and per output frame for both methods."""

    stream_pass: int
    stream_decode: int  # one chunk
    window_pass: int
    window_decode: int  # one window
    stream_per_frame: float
    window_per_frame: float
    stream_frames_per_chunk: int

    @property
    def ratio(self) -> float:
        return self.window_per_frame / self.stream_per_frame

    @property
    def stream_decode_share(self) -> float:
        """Share of the streaming compute spent in the VAE decoder."""
        return self.stream_decode / (self.stream_per_frame * self.stream_frames_per_chunk)


def _count(work) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def count_flops(preset: ModelPreset, height: int, width: int, stream: StreamSettings = StreamSettings(),
                window: WindowSettings = WindowSettings(), window_passes_per_step: int = 3) -> FlopFigures:
    """FLOPs per output frame of streaming (single pass) and of the windowed baseline at `height` x `width`."""
    meta = torch.device("meta")
    stride = preset.vae.temporal_stride
    h, w = height // preset.vae.spatial_stride, width // preset.vae.spatial_stride
    n = stream.chunk_frames
    window_latents = 1 + (window.window_frames - 1) // stride
    with meta, torch.no_grad():
        dit, vae = WanDiT(preset.dit), WanVAE(preset.vae)
        cfg = dit.cfg
        cond = dit.prepare_conditioning(text=torch.zeros(1, cfg.text_len, cfg.text_dim))
        audio = cfg.audio

        def with_audio(frames: int):
            if audio is None:
                return cond
            return replace(cond, audio=torch.zeros(1, frames, audio.context_tokens, audio.token_dim))

        patch = cfg.patch_size
        cache_window = stream.window_frames or n
        cache = dit.create_kv_cache(1, (h // patch[1]) * (w // patch[2]), stream.sink_frames, cache_window,
                                    torch.float32, meta, chunk_frames=n, rope_layout=stream.rope_layout)
        dit.forward_chunk(torch.zeros(1, cfg.out_dim, stream.sink_frames, h, w), torch.zeros(1, stream.sink_frames),
                          with_audio(stream.sink_frames), cache, 0, write_cache=True)
        start = stream.sink_frames
        while start < stream.sink_frames + cache_window:  # fill the window: the counted pass reads a full cache
            dit.forward_chunk(torch.zeros(1, cfg.out_dim, n, h, w), torch.zeros(1, n), with_audio(n), cache, start,
                              write_cache=True)
            start += n
        stream_pass = _count(lambda: dit.forward_chunk(torch.zeros(1, cfg.out_dim, n, h, w), torch.zeros(1, n),
                                                       with_audio(n), cache, start))
        window_pass = _count(lambda: dit(torch.zeros(1, cfg.out_dim, window_latents, h, w),
                                         torch.zeros(1, window_latents), with_audio(window_latents),
                                         attention=Bidirectional()))
        decoder = StreamingDecoder(vae)
        decoder.decode_chunk(torch.zeros(1, preset.vae.z_dim, 1, h, w))
        stream_decode = _count(lambda: decoder.decode_chunk(torch.zeros(1, preset.vae.z_dim, n, h, w)))
        window_decode = _count(lambda: vae.decode(torch.zeros(1, preset.vae.z_dim, window_latents, h, w)))
    stream_frames = n * stride
    window_frames = window.window_frames - window.motion_frames
    return FlopFigures(
        stream_pass=stream_pass, stream_decode=stream_decode, window_pass=window_pass, window_decode=window_decode,
        stream_per_frame=((stream.steps + 1) * stream_pass + stream_decode) / stream_frames,
        window_per_frame=(window.steps * window_passes_per_step * window_pass + window_decode) / window_frames,
        stream_frames_per_chunk=stream_frames,
    )

"""EchoTorrent Streaming Sampler: reference image + audio features -> video frames, chunk by chunk.

Output memory: the frames are written into one preallocated float32 CPU tensor of `frames * height * width * 3 * 4`
bytes (a ComfyUI IMAGE; 480x832 is 4.8 MB per frame, 120 MB per second at 25 fps), the latents into a
`[1, 16, 1 + F, height/8, width/8]` float32 one. The model state (KV cache, decoder cache) stays constant. For long
audio use EchoTorrent Stream -> EchoTorrent Save Stream, which holds no frame batch.

The LATENT follows ComfyUI's Wan convention: raw VAE latents (the per-channel normalisation the DiT works in is
undone), so core VAE Decode with the same Wan 2.1 VAE decodes it, and core Wan latents decode in Refined VAE Decode.
"""

from __future__ import annotations

from typing import Any

import torch
from comfy_api.latest import io

from echotorrent_core.streaming import StreamingSampler

from .progress import ChunkProgress
from .stream import chunks, describe_stream, open_stream, player_preview, stream_inputs
from .types import EchoTorrentStream


class EchoTorrentStreamingSampler(io.ComfyNode):
    """Streams the video: every chunk is denoised in a few passes against the KV cache, then decoded."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentStreamingSampler",
            display_name="EchoTorrent Streaming Sampler",
            category="EchoTorrent/sampling",
            description="Generates a talking video of the reference image driven by the audio features, chunk by "
                        "chunk with a rolling KV cache: cost per chunk and model memory stay constant however long "
                        "the audio is. The frames are collected into one IMAGE batch (width x height x 12 bytes "
                        "per frame); for long audio use EchoTorrent Stream with EchoTorrent Save Stream instead.",
            inputs=stream_inputs(),
            outputs=[
                io.Image.Output("frames", display_name="frames", tooltip="The video frames [T, H, W, 3]."),
                io.Audio.Output("audio", display_name="audio", tooltip="The original audio, for Create Video."),
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="Raw Wan latents [1, 16, 1 + F, h, w] (ComfyUI's Wan convention): the "
                                         "reference portrait's latent frame, then the generated ones; for core VAE "
                                         "Decode or Refined VAE Decode."),
                io.Float.Output("fps", display_name="fps", tooltip="Frame rate of the video."),
            ],
        )

    @classmethod
    def execute(cls, **inputs: Any) -> io.NodeOutput:
        stream = describe_stream(**inputs)
        sampler = open_stream(stream)
        frames, latents = cls._collect(stream, sampler)
        audio = stream.audio
        return io.NodeOutput(frames, audio.audio, {"samples": latents}, audio.fps)

    @classmethod
    def _collect(cls, stream: EchoTorrentStream, sampler: StreamingSampler) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the chunk loop into preallocated outputs: frames `[T, H, W, 3]`, raw latents `[1, C, 1 + F, h, w]`."""
        num_frames = stream.audio.num_frames
        total = sampler.num_chunks(num_frames)
        n = sampler.settings.chunk_frames
        vae = sampler.vae
        sink = sampler.reference_latent(stream.reference)
        frames = torch.empty(num_frames, stream.height, stream.width, 3)
        latents = torch.empty(1, sink.shape[1], 1 + total * n, *sink.shape[3:])
        latents[:, :, :1] = vae.denormalise(sink.float()).cpu()
        progress = ChunkProgress(total, player_preview(stream))
        for chunk in chunks(stream, sampler):
            frames[chunk.first_frame : chunk.first_frame + chunk.frames.shape[0]] = chunk.frames
            latents[:, :, 1 + chunk.index * n : 1 + (chunk.index + 1) * n] = vae.denormalise(chunk.latents.float())
            progress.done(chunk.index + 1, chunk.frames)
        return frames, latents

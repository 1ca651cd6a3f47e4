"""EchoTorrent Refined VAE Decode: latents -> frames, streamed chunk by chunk through the base or refined decoder.

The LATENT holds raw Wan latents (ComfyUI's convention: core VAE Encode's output, our sampler's latent output).
"""

from __future__ import annotations

import math

import torch
from comfy_api.latest import io

from echotorrent_core.media.frames import video_to_frames
from echotorrent_core.models.vae import StreamingDecoder

from .memory import load_to_device
from .progress import ChunkProgress, check_interrupt
from .types import EchoTorrentModel, ModelType

DECODER_CHOICES = ("auto", "refiner", "base")


def choose_decoder(model: EchoTorrentModel, choice: str) -> torch.nn.Module:
    """auto = the refiner when one was loaded, else the base VAE; refiner without one loaded is an error."""
    if choice == "base" or (choice == "auto" and model.refiner is None):
        return model.vae
    if model.refiner is None:
        raise ValueError("decoder 'refiner' was chosen but Load EchoTorrent has refiner = none; pick a refiner file "
                         "there or decode with 'base'")
    return model.refiner


def decoded_frame_count(latent_frames: int, temporal_stride: int, drop_reference_frame: bool) -> int:
    """Video frames `1 + stride * (n - 1)` of `n` latent frames, less the reference frame when it is dropped."""
    return 1 + temporal_stride * (latent_frames - 1) - int(drop_reference_frame)


class RefinedVAEDecode(io.ComfyNode):
    """Decodes a latent video with constant memory: the causal decoder cache is carried from chunk to chunk."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentRefinedVAEDecode",
            display_name="EchoTorrent Refined VAE Decode",
            category="EchoTorrent/decode",
            description="Streams latents through the Wan VAE decoder, or the decoder refiner of Load EchoTorrent, a "
                        "few latent frames at a time; the frames equal one full decode.",
            inputs=[
                ModelType.Input("model", tooltip="From Load EchoTorrent (its VAE and optional decoder refiner)."),
                io.Latent.Input("latent", tooltip="Raw Wan 2.1 latents [1, 16, F, h, w] (ComfyUI's Wan LATENT), e.g. "
                                                  "the sampler's latent output or core VAE Encode's."),
                io.Combo.Input("decoder", options=list(DECODER_CHOICES), default="auto",
                               tooltip="auto: the refiner when one is loaded, else the base VAE decoder."),
                io.Boolean.Input("drop_reference_frame", default=True,
                                 tooltip="Drop the first decoded frame: the sampler's latents start with the "
                                         "reference portrait, which is not part of the video."),
                io.Int.Input("num_frames", default=0, min=0, max=1_000_000,
                             tooltip="Frames to keep (connect Audio Encode's frame_count to match the audio); "
                                     "0 keeps every decoded frame."),
                io.Int.Input("chunk_frames", default=3, min=1, max=64,
                             tooltip="Latent frames decoded per step; memory grows with it, the result does not "
                                     "change."),
            ],
            outputs=[io.Image.Output("frames", display_name="frames", tooltip="The decoded frames [T, H, W, 3].")],
        )

    @classmethod
    def execute(cls, model: EchoTorrentModel, latent: dict, decoder: str, drop_reference_frame: bool,
                num_frames: int, chunk_frames: int) -> io.NodeOutput:
        vae = choose_decoder(model, decoder)
        load_to_device(model, "vae" if vae is model.vae else "refiner")
        samples = latent["samples"]
        if samples.ndim != 5 or samples.shape[0] != 1:
            raise ValueError(f"expected one latent video [1, {vae.cfg.z_dim}, F, h, w], got {tuple(samples.shape)}")
        vae.check_latents(samples)
        available = decoded_frame_count(samples.shape[2], vae.cfg.temporal_stride, drop_reference_frame)
        if available < 1:
            raise ValueError("a single latent frame decodes to the reference frame only; turn drop_reference_frame "
                             "off or pass more latent frames")
        if num_frames > available:
            raise ValueError(f"num_frames {num_frames} asked, but these {samples.shape[2]} latent frames decode to "
                             f"{available} frames")
        total = num_frames or available
        skip = int(drop_reference_frame)
        needed = 1 + math.ceil((total + skip - 1) / vae.cfg.temporal_stride)  # latent frames to decode
        stride = vae.cfg.spatial_stride
        frames = torch.empty(total, samples.shape[3] * stride, samples.shape[4] * stride, 3)
        starts = range(0, needed, chunk_frames)
        progress = ChunkProgress(len(starts))
        streaming = StreamingDecoder(vae)
        parameter = next(vae.parameters())
        written = 0
        for index, start in enumerate(starts):
            check_interrupt()
            with torch.no_grad():
                raw = samples[:, :, start : min(start + chunk_frames, needed)].to(parameter.device, torch.float32)
                video = streaming.decode_chunk(vae.normalise(raw).to(parameter.dtype))
            chunk = video_to_frames(video[0])[skip:][: total - written]
            skip = max(0, skip - video.shape[2])
            frames[written : written + chunk.shape[0]] = chunk
            written += chunk.shape[0]
            progress.done(index + 1, chunk)
        return io.NodeOutput(frames)

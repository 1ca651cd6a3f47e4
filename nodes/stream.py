"""EchoTorrent Stream: the inputs of a streamed generation gathered into one ECHOTORRENT_STREAM, and how a node runs
one (models onto the device, the KV cache size checked, chunks yielded one by one).

The Streaming Sampler and the Stream node take the same inputs (`stream_inputs`); the sampler runs the stream at
once into an IMAGE batch, the Stream node hands it to a consumer such as EchoTorrent Save Stream, which writes each
chunk as it arrives and holds no frame batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import comfy.model_management
import torch
from comfy_api.latest import io

from echotorrent_core.guidance_inputs import fit_region_mask, policy_for_stream
from echotorrent_core.media import load_image
from echotorrent_core.streaming import CachedContext, ChunkOutput, StreamingSampler, StreamSettings

from .core_inputs import clip_features_from_core
from .memory import load_to_device
from .progress import StreamPreview, check_interrupt
from .types import (
    AudioFeatures, AudioFeaturesType, EchoTorrentModel, EchoTorrentStream, Guidance, GuidanceType, ModelType,
    StreamType,
)

RESIZE_POLICY = "cover"
MAX_SEED = 0xFFFFFFFFFFFFFFFF
LOG = logging.getLogger("echotorrent")


def reference_from_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """ComfyUI IMAGE `[1, H, W, C]` in [0, 1] -> portrait `[3, height, width]` in [-1, 1] (scaled to cover, then
    centre-cropped); a batch of several images is an error."""
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(
            f"expected one reference image (IMAGE [1, H, W, 3]), got shape {tuple(image.shape)}; "
            "pick a single frame of a batch first"
        )
    return load_image(image[0], height, width, RESIZE_POLICY)


def text_from_conditioning(conditioning: list | None, text_dim: int, text_len: int, name: str) -> torch.Tensor | None:
    """The text embedding `[1, L <= text_len, text_dim]` of a CONDITIONING from CLIPTextEncode (a list of one
    `[tensor [1, L, D], dict]`); longer texts are cut to the model's `text_len` tokens."""
    if conditioning is None:
        return None
    if len(conditioning) != 1:
        raise ValueError(f"{name} conditioning must come from one text encode; got {len(conditioning)} entries")
    text = conditioning[0][0]
    if text.ndim != 3 or text.shape[0] != 1 or text.shape[2] != text_dim:
        raise ValueError(
            f"{name} conditioning has shape {tuple(text.shape)}, but this DiT expects text embeddings "
            f"[1, L, {text_dim}] (umT5-XXL from a CLIPLoader of type 'wan' for Wan2.1 models)"
        )
    return text[:, :text_len]


def stream_inputs() -> list[io.Input]:
    """The inputs shared by the Streaming Sampler and the Stream node, in socket order."""
    return [
        ModelType.Input("model", tooltip="From Load EchoTorrent."),
        io.Image.Input("image", tooltip="The reference portrait, one image (IMAGE [1, H, W, 3]); scaled to "
                                        "cover width x height and centre-cropped."),
        AudioFeaturesType.Input("audio_features", tooltip="From EchoTorrent Audio Encode; sets the video "
                                                          "length and frame rate."),
        io.Int.Input("width", default=832, min=16, max=4096, step=16,
                     tooltip="Output width in pixels (a multiple of 16)."),
        io.Int.Input("height", default=480, min=16, max=4096, step=16,
                     tooltip="Output height in pixels (a multiple of 16)."),
        io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                     tooltip="Seeds all noise of the stream: same seed and inputs, same video."),
        io.Int.Input("steps", default=4, min=1, max=100,
                     tooltip="Denoising steps per chunk (distilled EchoTorrent models: 4)."),
        io.Float.Input("shift", default=5.0, min=0.1, max=100.0, step=0.1,
                       tooltip="Flow-matching timestep shift of the schedule."),
        io.Combo.Input("solver", options=["few_step", "euler"], default="few_step",
                       tooltip="few_step: re-noise the predicted clean chunk between steps (distilled "
                               "models). euler: integrate the flow ODE (teacher models, many steps)."),
        io.Int.Input("chunk_frames", default=3, min=1, max=21,
                     tooltip="Latent frames generated per chunk (1 latent frame = 4 video frames)."),
        io.Int.Input("window_frames", default=6, min=0, max=1024,
                     tooltip="Latent frames of earlier chunks kept in the rolling KV cache; 0 keeps all "
                             "(memory and cost then grow with the video; the size is checked before starting)."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="Optional text prompt embedding (umT5, from CLIPTextEncode)."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="Optional negative text embedding, used by text guidance."),
        GuidanceType.Input("guidance", optional=True,
                           tooltip="From EchoTorrent ACC Guidance; without it one pass per step."),
        io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                  tooltip="CLIP Vision Encode of the portrait (CLIP-H); needed by image-to-video "
                                          "checkpoints (in_dim 36 with a CLIP branch), not used by others."),
    ]


def describe_stream(model: EchoTorrentModel, image: torch.Tensor, audio_features: AudioFeatures, width: int,
                    height: int, seed: int, steps: int, shift: float, solver: str, chunk_frames: int,
                    window_frames: int, positive: list | None = None, negative: list | None = None,
                    guidance: Guidance | None = None, clip_vision_output: Any = None) -> EchoTorrentStream:
    """Check the inputs of `stream_inputs` and gather them into a stream description (nothing runs yet)."""
    cfg = model.dit.cfg
    reference = reference_from_image(image, height, width)
    settings = StreamSettings(chunk_frames=chunk_frames, window_frames=window_frames or None, steps=steps,
                              shift=shift, solver=solver, fps=audio_features.fps, seed=seed)
    mask = None if guidance is None else guidance.region_mask
    return EchoTorrentStream(
        model=model, reference=reference, audio=audio_features, settings=settings,
        policy=None if guidance is None else policy_for_stream(guidance.policy, chunk_frames),
        region_mask=None if mask is None else fit_region_mask(mask, height, width, RESIZE_POLICY),
        text=text_from_conditioning(positive, cfg.text_dim, cfg.text_len, "positive"),
        negative_text=text_from_conditioning(negative, cfg.text_dim, cfg.text_len, "negative"),
        clip_fea=clip_features_from_core(clip_vision_output, cfg.image_dim),
    )


def kv_cache_bytes(stream: EchoTorrentStream, sampler: StreamingSampler) -> int:
    """Bytes of the KV cache this stream allocates: the cache is built on the meta device (no memory) and
    measured, so the figure is the sampler's own layout (blocks x K/V x sink + window frames x tokens x dim)."""
    stride = sampler.spatial_stride
    latent_hw = (stream.height // stride, stream.width // stride)
    stream_frames = sampler.num_chunks(stream.audio.num_frames) * stream.settings.chunk_frames
    context = CachedContext(sampler.dit, stream.settings, latent_hw, stream_frames, sampler.dtype,
                            torch.device("meta"))
    return context.allocated_bytes


def readable_bytes(size: int) -> str:
    """`size` bytes in KiB, MiB or GiB, whichever keeps the number readable."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size / 2**10:.2f} KiB"


def check_unlimited_window(stream: EchoTorrentStream, sampler: StreamingSampler, say: Callable[[str], None]) -> None:
    """With window_frames = 0 (keep everything) say how large the KV cache will be, and refuse a cache larger than
    the free memory of the DiT's device (`comfy.model_management.get_free_memory`)."""
    if stream.settings.window_frames is not None:
        return
    device = sampler.device
    needed = kv_cache_bytes(stream, sampler)
    free = int(comfy.model_management.get_free_memory(device))
    frames = sampler.num_chunks(stream.audio.num_frames) * stream.settings.chunk_frames
    message = (f"window_frames = 0 keeps all {frames} latent frames of this {stream.audio.num_frames / stream.audio.fps:.1f}"
               f" s stream in the KV cache: {readable_bytes(needed)} on {device}, {readable_bytes(free)} free")
    if needed > free:
        raise MemoryError(f"{message}. It does not fit: set window_frames (e.g. 6) for constant memory, lower the "
                          "resolution or shorten the audio")
    say(message)


def open_stream(stream: EchoTorrentStream, vae: torch.nn.Module | None = None,
                say: Callable[[str], None] = LOG.info) -> StreamingSampler:
    """The models onto their device (ComfyUI model management) and a sampler for `stream`, decoding with `vae`
    (default: the base VAE; pass the refiner to decode with it)."""
    model = stream.model
    decoder = model.vae if vae is None else vae
    load_to_device(model, "dit", "refiner" if decoder is model.refiner else "vae")
    sampler = StreamingSampler(model.dit, decoder, stream.settings, stream.policy)
    check_unlimited_window(stream, sampler, say)
    return sampler


def chunks(stream: EchoTorrentStream, sampler: StreamingSampler) -> Iterator[ChunkOutput]:
    """The stream's chunks, computed one at a time; ComfyUI's interruption is checked before every network pass."""
    return sampler.stream(stream.reference, stream.audio.features, text=stream.text,
                          negative_text=stream.negative_text, check_interrupt=check_interrupt,
                          clip_fea=stream.clip_fea, region_mask=stream.region_mask)


def player_preview(stream: EchoTorrentStream, saved_video: dict[str, str] | None = None) -> StreamPreview:
    """What the browser's live player needs to know about `stream` (and the file being written, if any)."""
    return StreamPreview(stream.audio.fps, stream.audio.num_frames, stream.height, stream.width,
                         audio=stream.audio.audio, saved_video=saved_video)


class EchoTorrentStreamNode(io.ComfyNode):
    """Describes a stream for a consumer node; nothing is generated until the consumer runs it."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentStream",
            display_name="EchoTorrent Stream",
            category="EchoTorrent/sampling",
            description="The Streaming Sampler's inputs as one ECHOTORRENT_STREAM, generated chunk by chunk by the "
                        "node it feeds (EchoTorrent Save Stream writes each chunk to an mp4 as it arrives): memory "
                        "stays constant however long the audio is.",
            inputs=stream_inputs(),
            outputs=[StreamType.Output("stream", display_name="stream",
                                       tooltip="The stream, for EchoTorrent Save Stream.")],
        )

    @classmethod
    def execute(cls, **inputs: Any) -> io.NodeOutput:
        return io.NodeOutput(describe_stream(**inputs))

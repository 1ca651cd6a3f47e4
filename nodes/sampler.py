"""EchoTorrent Streaming Sampler: reference image + audio features -> video frames, chunk by chunk.

Output memory: the frames are written into one preallocated float32 CPU tensor of `frames * height * width * 3 * 4`
bytes (a ComfyUI IMAGE; 480x832 is 4.8 MB per frame, 120 MB per second at 25 fps), the latents into a
`[1, 16, 1 + F, height/8, width/8]` float32 one. The model state (KV cache, decoder cache) stays constant.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from echotorrent_core.guidance_inputs import fit_region_mask, policy_for_stream
from echotorrent_core.media import load_image
from echotorrent_core.streaming import StreamingSampler, StreamSettings

from .progress import ChunkProgress, StreamPreview, check_interrupt
from .types import AudioFeatures, AudioFeaturesType, EchoTorrentModel, Guidance, GuidanceType, ModelType

RESIZE_POLICY = "cover"
MAX_SEED = 0xFFFFFFFFFFFFFFFF


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
                        "per frame).",
            inputs=[
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
                                     "(memory and cost then grow with the video)."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="Optional text prompt embedding (umT5, from CLIPTextEncode)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Optional negative text embedding, used by text guidance."),
                GuidanceType.Input("guidance", optional=True,
                                   tooltip="From EchoTorrent ACC Guidance; without it one pass per step."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames", tooltip="The video frames [T, H, W, 3]."),
                io.Audio.Output("audio", display_name="audio", tooltip="The original audio, for Create Video."),
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="Latents [1, 16, 1 + F, h, w]: the reference portrait's latent frame, then "
                                         "the generated ones; for Refined VAE Decode."),
                io.Float.Output("fps", display_name="fps", tooltip="Frame rate of the video."),
            ],
        )

    @classmethod
    def execute(cls, model: EchoTorrentModel, image: torch.Tensor, audio_features: AudioFeatures, width: int,
                height: int, seed: int, steps: int, shift: float, solver: str, chunk_frames: int, window_frames: int,
                positive: list | None = None, negative: list | None = None,
                guidance: Guidance | None = None) -> io.NodeOutput:
        cfg = model.dit.cfg
        reference = reference_from_image(image, height, width)
        text = text_from_conditioning(positive, cfg.text_dim, cfg.text_len, "positive")
        negative_text = text_from_conditioning(negative, cfg.text_dim, cfg.text_len, "negative")
        settings = StreamSettings(chunk_frames=chunk_frames, window_frames=window_frames or None, steps=steps,
                                  shift=shift, solver=solver, fps=audio_features.fps, seed=seed)
        policy = None if guidance is None else policy_for_stream(guidance.policy, chunk_frames)
        mask = None if guidance is None else guidance.region_mask
        fitted = None if mask is None else fit_region_mask(mask, height, width, RESIZE_POLICY)
        sampler = StreamingSampler(model.dit, model.vae, settings, policy)
        frames, latents = cls._stream(model, sampler, reference, audio_features, text, negative_text, fitted)
        return io.NodeOutput(frames, audio_features.audio, {"samples": latents}, audio_features.fps)

    @classmethod
    def _stream(cls, model: EchoTorrentModel, sampler: StreamingSampler, reference: torch.Tensor,
                audio_features: AudioFeatures, text: torch.Tensor | None, negative_text: torch.Tensor | None,
                region_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the chunk loop into preallocated outputs: frames `[T, H, W, 3]`, latents `[1, C, 1 + F, h, w]`."""
        num_frames = audio_features.num_frames
        chunks = sampler.num_chunks(num_frames)
        n = sampler.settings.chunk_frames
        sink = sampler.reference_latent(reference)
        frames = torch.empty(num_frames, *reference.shape[1:], 3)
        latents = torch.empty(1, sink.shape[1], 1 + chunks * n, *sink.shape[3:])
        latents[:, :, :1] = sink.float().cpu()
        progress = ChunkProgress(chunks, StreamPreview(sampler.settings.fps, num_frames, *reference.shape[1:],
                                                       audio=audio_features.audio))
        stream = sampler.stream(reference, audio_features.features, text=text, negative_text=negative_text,
                                check_interrupt=check_interrupt, region_mask=region_mask)
        for chunk in stream:
            frames[chunk.first_frame : chunk.first_frame + chunk.frames.shape[0]] = chunk.frames
            latents[:, :, 1 + chunk.index * n : 1 + (chunk.index + 1) * n] = chunk.latents.float()
            progress.done(chunk.index + 1, chunk.frames)
        return frames, latents

"""Settings of one streamed generation: chunking, cache window, schedule, seed."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.attention import ROPE_LAYOUTS, BlockCausal


@dataclass(frozen=True)
class StreamSettings:
    """How the chunk loop runs.

    chunk_frames: latent frames generated per chunk (3 latent frames = 12 video frames with the Wan VAE).
    window_frames: latent frames of earlier chunks kept in the rolling KV window (None = unlimited, cost grows).
    sink_frames: latent frames of the reference kept forever as the attention sink (the encoded portrait: 1).
    steps / shift: the denoising schedule; `solver` "few_step" re-noises the predicted x0 between steps
      (distilled students, Self-Forcing style), "euler" integrates the flow ODE (teachers, many steps).
    fps: video frame rate the audio features were computed at.
    seed: seeds all noise of the stream (same seed, same inputs -> same video).
    rope_layout: RoPE frame positions the chunks see (`models.attention`): "relative" (default: the sink just before
      the window, the window and the chunk at the same positions at chunk 10 and chunk 10,000, so the positions
      never leave the range of a training clip; equal to "absolute" while the window fills) or "absolute" (stream
      indices, for checkpoints trained on long sequences that way).
    colour_match: map every decoded frame's colours by the affine map that takes the decoded portrait to the
      portrait (`media.colour_map`; the portrait is decoded once per stream anyway). It undoes a small VAE's colour
      shift (default model: +1.4 dB PSNR on held-out videos) but lowered the sync expert's Sync-C there (0.14 ->
      0.12, 12 of 17 clips lower), so it is off by default.
    """

    chunk_frames: int = 3
    window_frames: int | None = 6
    sink_frames: int = 1
    steps: int = 4
    shift: float = 5.0
    solver: str = "few_step"
    fps: float = 25.0
    seed: int = 0
    rope_layout: str = "relative"
    colour_match: bool = False

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ValueError(f"window_frames must be >= 1 or None, got {self.window_frames}")
        if self.sink_frames != 1:
            raise ValueError(f"the reference portrait is one latent frame: sink_frames must be 1, got {self.sink_frames}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.solver not in ("few_step", "euler"):
            raise ValueError(f"solver must be 'few_step' or 'euler', got {self.solver!r}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")

    @property
    def attention(self) -> BlockCausal:
        """The block-causal attention of this stream, for `WanDiT.forward` (training, prefix recomputation)."""
        return BlockCausal(self.chunk_frames, self.sink_frames, self.window_frames, self.rope_layout)

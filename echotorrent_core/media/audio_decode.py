"""Decode an audio stream of an open PyAV container to a float32 tensor."""

from __future__ import annotations

import av
import numpy as np
import torch

from .errors import MediaError


def decode_audio_stream(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> tuple[torch.Tensor, int]:
    """Decode every frame of `stream`; returns (`[C, S]` float32 at the stream's rate, rate in Hz).

    All channels are kept. Raises `MediaError` if the channel count changes mid-stream; PyAV errors propagate.
    """
    resampler = av.AudioResampler(format="fltp")
    blocks: list[np.ndarray] = []
    rate = stream.rate
    for frame in container.decode(stream):
        rate = frame.sample_rate
        blocks.extend(converted.to_ndarray() for converted in resampler.resample(frame))
    blocks.extend(converted.to_ndarray() for converted in resampler.resample(None))
    channels = stream.channels if not blocks else blocks[0].shape[0]
    if any(block.shape[0] != channels for block in blocks):
        raise MediaError("audio stream changes its channel count mid-stream; expected a constant channel layout")
    if not blocks:
        return torch.zeros(channels, 0), int(rate)
    return torch.from_numpy(np.concatenate(blocks, axis=1).astype(np.float32, copy=False)), int(rate)

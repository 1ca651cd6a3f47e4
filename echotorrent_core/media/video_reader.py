"""Read a whole video file back into tensors (tests, metrics, previews)."""

from __future__ import annotations

import os

import av
import numpy as np
import torch

from .audio_decode import decode_audio_stream
from .errors import MediaError
from .files import require_media_file


def read_video_frames(
    path: str | os.PathLike[str],
) -> tuple[torch.Tensor, float, torch.Tensor | None, int | None]:
    """Decode the first video stream and the first audio stream of a file.

    Returns `(frames, fps, audio, audio_rate)`: frames `[T, H, W, 3]` uint8 RGB, fps of the video stream,
    audio `[C, S]` float32 (None, with `audio_rate` None, when the file has no audio stream).
    Raises `FileNotFoundError` / `MediaError` for a missing, empty, corrupt or video-less file.
    """
    resolved = require_media_file(path, "video")
    try:
        with av.open(str(resolved)) as container:
            if not container.streams.video:
                raise MediaError(f"file has no video stream: {resolved}")
            stream = container.streams.video[0]
            rate = stream.guessed_rate or stream.average_rate
            images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        audio, audio_rate = None, None
        with av.open(str(resolved)) as container:
            if container.streams.audio:
                audio, audio_rate = decode_audio_stream(container, container.streams.audio[0])
    except av.FFmpegError as error:
        raise MediaError(f"could not decode video file {resolved}: corrupt or not a video ({error})") from error
    if not images:
        raise MediaError(f"video stream of {resolved} holds no decodable frames")
    if rate is None:
        raise MediaError(f"video stream of {resolved} declares no frame rate")
    return torch.from_numpy(np.stack(images)), float(rate), audio, audio_rate

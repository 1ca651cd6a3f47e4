"""ComfyUI progress and interruption for the chunk loops: a progress bar with a preview frame per chunk and, for a
streamed video, the live player's events (start, every chunk's frames and sound, end; see stream_preview.py)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import comfy.model_management
import comfy.utils
import torch
from PIL import Image

from .node_events import NodeEventTarget
from .stream_preview import StreamPreview, chunk_payload, end_payload, mono_track, start_payload

PREVIEW_MAX_SIZE = 512  # longest preview side; smaller frames are sent as they are (the server would upscale)
STREAM_CHANNEL = "echotorrent.stream"  # events echotorrent.stream.start / .chunk / .end
# Encodes the player's chunks beside the chunk loop, so JPEG and PCM encoding overlap the next chunk's generation.
_ENCODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echotorrent-player")


def check_interrupt() -> None:
    """Raise ComfyUI's InterruptProcessingException once the user pressed Cancel (or POST /interrupt)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


class ChunkProgress:
    """A ComfyUI ProgressBar over `total` chunks that shows the last frame of each finished chunk; with a
    `stream`, each chunk's frames and sound also go to the browser's player (start event now, end event after the
    last chunk), kept for a page that reloads mid-run. Constructed and called on the node's execution thread."""

    def __init__(self, total: int, stream: StreamPreview | None = None) -> None:
        self.total = total
        self.bar = comfy.utils.ProgressBar(total)
        self.stream = stream
        self.target = None if stream is None else NodeEventTarget.current()
        self.frames_done = 0
        self.started = self.last = time.perf_counter()
        self.pending: Future | None = None
        self.track = None if self.target is None else mono_track(stream.audio)
        if self.target is not None:
            self.target.send(STREAM_CHANNEL, "start", start_payload(stream, total), keep=True)

    def done(self, chunks: int, frames: torch.Tensor | None) -> None:
        """`chunks` finished so far; `frames` `[n, H, W, 3]` in [0, 1] are the newest chunk's (its last frame is
        the preview; None: no new frames). The frames are read until the next call (or, after the last chunk,
        before this one returns): do not write into them meanwhile."""
        preview = None
        if frames is not None and frames.shape[0] > 0:
            pixels = (frames[-1].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            preview = ("JPEG", Image.fromarray(pixels), min(PREVIEW_MAX_SIZE, max(pixels.shape[:2])))
        self.bar.update_absolute(chunks, self.total, preview)
        if self.target is not None:
            self._queue_chunk(chunks, frames)

    def _queue_chunk(self, chunks: int, frames: torch.Tensor | None) -> None:
        """Send this chunk's event from the encoder (one chunk in flight; events stay in order), then the end event
        after the last chunk, which is waited for."""
        now = time.perf_counter()
        self._wait()
        if frames is not None and frames.shape[0] > 0:
            job = (chunks - 1, self.frames_done, frames, now - self.last)
            self.pending = _ENCODER.submit(self._send_chunk, *job)
            self.frames_done += frames.shape[0]
        self.last = now
        if chunks == self.total:
            self._wait()
            self.target.send(STREAM_CHANNEL, "end", end_payload(self.stream, chunks, self.total, now - self.started),
                             keep=True)

    def _send_chunk(self, index: int, first_frame: int, frames: torch.Tensor, seconds: float) -> None:
        payload = chunk_payload(self.stream, self.track, index, self.total, first_frame, frames, seconds)
        self.target.send(STREAM_CHANNEL, "chunk", payload, keep=True)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

"""ComfyUI progress and interruption for the chunk loops: a progress bar with a preview frame per chunk."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from PIL import Image

PREVIEW_MAX_SIZE = 512  # longest preview side; smaller frames are sent as they are (the server would upscale)


def check_interrupt() -> None:
    """Raise ComfyUI's InterruptProcessingException once the user pressed Cancel (or POST /interrupt)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


class ChunkProgress:
    """A ComfyUI ProgressBar over `total` chunks that shows the last frame of each finished chunk."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = comfy.utils.ProgressBar(total)

    def done(self, chunks: int, frame: torch.Tensor | None) -> None:
        """`chunks` finished so far; `frame` `[H, W, 3]` in [0, 1] becomes the preview (None: no new preview)."""
        preview = None
        if frame is not None:
            pixels = (frame.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            preview = ("JPEG", Image.fromarray(pixels), min(PREVIEW_MAX_SIZE, max(pixels.shape[:2])))
        self.bar.update_absolute(chunks, self.total, preview)

"""NaN / inf checks of long tensors (a whole audio track, a stream's audio features) in small spans.

`torch.isfinite(x).all()` makes a float copy of `x` (`abs`) and boolean masks of its full size: for a long track
that is a transient peak larger than the track. `all_finite` checks `span_elements` values at a time along one
dimension (spans are views), so its memory is one span's, whatever the length.
"""

from __future__ import annotations

import torch

FINITE_SPAN_ELEMENTS = 1 << 16  # values checked at a time (256 KB float32 copies)


def all_finite(tensor: torch.Tensor, dim: int = -1, span_elements: int = FINITE_SPAN_ELEMENTS) -> bool:
    """Whether every value of `tensor` (any shape) is finite, checked in spans along `dim` of about
    `span_elements` values each; True for an empty tensor, as `torch.isfinite(x).all()`."""
    if tensor.ndim == 0 or tensor.numel() == 0:
        return bool(torch.isfinite(tensor).all())
    length = tensor.shape[dim]
    step = max(1, span_elements // max(1, tensor.numel() // length))
    return all(bool(torch.isfinite(tensor.narrow(dim, start, min(step, length - start))).all())
               for start in range(0, length, step))

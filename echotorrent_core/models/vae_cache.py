"""Feature cache of the Wan VAE's causal layers.

The VAE runs its encoder / decoder one temporal step at a time (the encoder: the first frame, then groups of
`temporal_stride` frames; the decoder: the first latent, then a few latents per step). Between steps every causal
layer keeps the last frames of its input (at most 2), so a step sees exactly the context a single pass over the
whole video would.
Layers use the cache in a fixed order inside a step: the i-th `load` / `store` pair of a step belongs to the
i-th causal layer, so the cache holds one slot per causal layer and its size is fixed after the second step.
"""

from __future__ import annotations

import torch


class FeatureCache:
    """Per-layer history tensors `[B, C, <=2, h, w]`, addressed by call order within a step."""

    def __init__(self) -> None:
        self._slots: list[torch.Tensor] = []
        self._cursor = 0

    def begin_step(self) -> None:
        """Start a new step: the next `load` reads the first layer's slot."""
        self._cursor = 0

    def load(self) -> torch.Tensor | None:
        """History of the current layer, or None when this layer has not run yet in this stream."""
        return self._slots[self._cursor] if self._cursor < len(self._slots) else None

    def store(self, history: torch.Tensor) -> None:
        """Replace the current layer's history and move on to the next layer."""
        if self._cursor < len(self._slots):
            self._slots[self._cursor] = history
        else:
            self._slots.append(history)
        self._cursor += 1

    def reset(self) -> None:
        """Forget every history (a new stream starts)."""
        self._slots.clear()
        self._cursor = 0

    @property
    def is_empty(self) -> bool:
        return not self._slots

    def shapes(self) -> list[tuple[int, ...]]:
        """Shape of every slot, in layer order."""
        return [tuple(slot.shape) for slot in self._slots]

    def snapshot(self) -> tuple[torch.Tensor, ...]:
        """The current histories (slots are replaced, never written in place, so these stay as they are)."""
        return tuple(self._slots)

    def same_as(self, snapshot: tuple[torch.Tensor, ...]) -> bool:
        """Whether every history equals (bit for bit) the one in `snapshot`."""
        return len(snapshot) == len(self._slots) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(self._slots, snapshot)
        )

    def numel(self) -> int:
        """Total number of cached elements."""
        return sum(slot.numel() for slot in self._slots)

"""Where a stage's trainable network starts: a saved file, or fresh weights from a preset seeded by the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

Network = TypeVar("Network", bound=nn.Module)


def initial_network(init: str | None, load: Callable[[str], Network], build: Callable[[], Network],
                    seed: int) -> Network:
    """`load(init)` when a file is given, else `build()` under `torch.manual_seed(seed)` (the run's seed, so a rerun
    starts from the same weights). A loaded network is made trainable (loaders return inference networks, frozen)."""
    if init:
        return load(init).requires_grad_(True).train()
    torch.manual_seed(seed)
    return build()

"""Exponential moving average of a module's parameters (fp32 shadows, FSDP2 shards kept sharded).

Before `start_step` the shadow follows the weights (copy); from then on, after every optimiser update,
`shadow = decay * shadow + (1 - decay) * param`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class ParameterEMA:
    """EMA shadows of `module.named_parameters()` (trainable ones), keyed by parameter name."""

    def __init__(self, module: nn.Module, decay: float, start_step: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = module
        self.decay = decay
        self.start_step = start_step
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().to(torch.float32, copy=True) for name, p in module.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Call after the optimiser update of `step` (0-based)."""
        params = dict(self.module.named_parameters())
        for name, shadow in self.shadow.items():
            value = params[name].detach().to(torch.float32)
            if step < self.start_step:
                shadow.copy_(value)
            else:
                shadow.lerp_(value, 1.0 - self.decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Temporarily put the EMA weights into the module (training weights restored on exit)."""
        params = dict(self.module.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow)
        try:
            yield
        finally:
            for name, value in saved.items():
                params[name].copy_(value)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The shadows (DTensor shards under FSDP2; the checkpoint gathers them)."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore shadows from full tensors (each rank keeps its own shard of a DTensor shadow)."""
        missing = sorted(set(self.shadow) - set(tensors))
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameter(s), e.g. {missing[:3]}")
        for name, shadow in self.shadow.items():
            value = tensors[name]
            if hasattr(shadow, "device_mesh") and not hasattr(value, "device_mesh"):
                from torch.distributed.tensor import distribute_tensor

                value = distribute_tensor(value.to(shadow.device), shadow.device_mesh, shadow.placements)
            shadow.copy_(value)

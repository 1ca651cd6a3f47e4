"""A toy regression stage for the trainer tests (registered here only), plus tests of its building blocks.

The stage is importable as a plugin file (`echotorrent train toy_regression --import tests/test_trainer_toy.py`),
which is how the torchrun tests reach it from fresh processes.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.training.registry import register_stage
from echotorrent_core.training.sampler import DataOrder
from echotorrent_core.training.stage import Stage


@dataclass
class ToyConfig:
    samples: int = 48
    heldout: int = 16
    features: int = 4
    hidden: int = 8
    noise: float = 0.1
    host_noise: bool = True
    critic: bool = False
    context: bool = False
    interrupt_at: int = -1
    raise_at: int = -1


class ToyData(Dataset):
    """y = tanh(x A) b + 0.05 * e: a pure function of (seed, index)."""

    def __init__(self, count: int, features: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(count, features, generator=generator)
        weights = torch.Generator().manual_seed(1234)
        a = torch.randn(features, 6, generator=weights)
        b = torch.randn(6, 1, generator=weights)
        self.y = torch.tanh(self.x @ a) @ b + 0.05 * torch.randn(count, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"x": self.x[index], "y": self.y[index], "index": index}


@dataclass(frozen=True)
class BlockContext:
    gate: torch.Tensor


@dataclass(frozen=True)
class Prepared:
    embedded: torch.Tensor
    contexts: tuple[BlockContext, ...]


class ContextBlock(nn.Module):
    """A block whose context is projected by a separate method, before the forward (as the DiT's context_kv)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)

    def context(self, embedded: torch.Tensor) -> BlockContext:
        return BlockContext(torch.sigmoid(self.gate(embedded)))

    def forward(self, z: torch.Tensor, context: BlockContext) -> torch.Tensor:
        return z + torch.tanh(self.lin(z)) * context.gate


class ContextNet(nn.Module):
    """`prepare(x)` (a second forward method returning dataclasses), then `forward(prepared)`."""

    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.blocks = nn.ModuleList([ContextBlock(width), ContextBlock(width)])
        self.head = nn.Linear(width, 1)

    def prepare(self, x: torch.Tensor) -> Prepared:
        embedded = self.embed(x)
        return Prepared(embedded, tuple(block.context(embedded) for block in self.blocks))

    def forward(self, prepared: Prepared) -> torch.Tensor:
        z = prepared.embedded
        for block, context in zip(self.blocks, prepared.contexts):
            z = block(z, context)
        return self.head(z)


@register_stage
class ToyRegression(Stage):
    """Two-layer regressor; optional critic fitting the residual (exercises critic steps, two optimisers)."""

    name = "toy_regression"
    Config = ToyConfig
    fsdp_forward_methods = ("prepare", "context")

    def __init__(self, config: ToyConfig, trainer_config, device) -> None:
        super().__init__(config, trainer_config, device)
        if config.context:
            self.net = ContextNet(config.features, config.hidden)
        else:
            self.net = nn.Sequential(nn.Linear(config.features, config.hidden), nn.Tanh(),
                                     nn.Linear(config.hidden, 1))
        self.critic = nn.Linear(config.features, 1) if config.critic else None
        self.critic_steps = 2 if config.critic else 0
        self.seen: list[list[int]] = []
        self.calls = 0
        self.signalled = False

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.net, **({"critic": self.critic} if self.critic is not None else {})}

    def blocks(self, role: str) -> list[nn.Module]:
        if role != "generator":
            return []
        return list(self.net.blocks) if self.config.context else [self.net[0], self.net[2]]

    def dataset(self, split: str) -> Dataset:
        if split == "train":
            return ToyData(self.config.samples, self.config.features, seed=0)
        return ToyData(self.config.heldout, self.config.features, seed=1)

    def _inputs(self, batch: dict) -> torch.Tensor:
        x = batch["x"]
        if self.config.noise:
            scale = self.config.noise
            if self.config.host_noise:
                scale *= 0.5 + 0.5 * (random.random() + float(np.random.rand())) / 2
            x = x + scale * torch.randn_like(x)
        return x

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.net.prepare(x)) if self.config.context else self.net(x)

    def generator_loss(self, batch: dict, step: int):
        if step == self.config.interrupt_at and self.net.training and not self.signalled:
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)
        if step == self.config.raise_at and self.net.training:
            raise KeyboardInterrupt
        self.calls += 1
        self.seen.append(batch["index"].tolist())
        prediction = self._predict(self._inputs(batch))
        self.compute_dtype = prediction.dtype
        if self.critic is not None:
            with torch.no_grad():
                correction = self.critic(batch["x"])
            prediction = prediction + correction
        loss = torch.mean((prediction - batch["y"]) ** 2)
        return loss, {"mse": float(loss.detach())}

    def critic_loss(self, batch: dict, step: int):
        with torch.no_grad():
            residual = batch["y"] - self._predict(batch["x"])
        loss = torch.mean((self.critic(self._inputs(batch)) - residual) ** 2)
        return loss, {"residual": float(loss.detach())}

    def evaluate(self, step: int) -> dict[str, float]:
        return {"weight_norm": float(sum(p.detach().float().norm() ** 2 for p in self.net.parameters()) ** 0.5)}

    def export(self, out_dir: Path) -> list[Path]:
        return [write_state_dict(Path(out_dir) / "toy.safetensors", self.export_weights("generator"))]

    def extra_state(self) -> dict:
        return {"calls": self.calls}

    def load_extra_state(self, state: dict) -> None:
        self.calls = state["calls"]


def test_data_order_shards_a_global_batch_over_ranks_and_micro_batches():
    single = DataOrder(dataset_len=20, global_batch=8, accum=2, world=1, rank=0, seed=3)
    ranks = [DataOrder(dataset_len=20, global_batch=8, accum=1, world=2, rank=r, seed=3) for r in range(2)]
    for batch in range(5):
        micro = single.micro_indices(batch)
        assert [m for m in micro] == [ranks[0].micro_indices(batch)[0], ranks[1].micro_indices(batch)[0]]
        assert sorted(sum(micro, [])) == sorted(single.global_indices(batch))
        assert len(set(sum(micro, []))) == 8
    epoch0 = sum((single.global_indices(b) for b in range(2)), [])
    assert len(set(epoch0)) == 16
    assert single.global_indices(2) != single.global_indices(0)
    stream = single.iterate(3)
    assert [next(stream) for _ in range(2)] == single.micro_indices(3)


def test_data_order_rejects_uneven_shards_and_tiny_sets():
    import pytest

    with pytest.raises(ValueError, match="divisible by grad_accum x world size"):
        DataOrder(dataset_len=20, global_batch=6, accum=2, world=2, rank=0, seed=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        DataOrder(dataset_len=4, global_batch=8, accum=1, world=1, rank=0, seed=0)

"""Deterministic data order, sharded over ranks and accumulation micro-batches.

Every update (critic or generator) consumes one *global batch* of `global_batch` samples. Epoch e is the
permutation `randperm(N, seed + e)`; its global batches are consecutive slices (the remainder is dropped). A
global batch is cut into `accum * world` equal parts: micro-batch m of rank r is part `m * world + r`. So one
process with accumulation 2 and two processes without accumulation see the same samples per update.
The whole order is a function of (seed, N, global_batch) and the number of global batches consumed, which is all
a checkpoint needs to resume the data stream exactly (`DataOrder.state`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DataOrder:
    """Which samples each rank reads for each micro-batch of each update."""

    dataset_len: int
    global_batch: int
    accum: int
    world: int
    rank: int
    seed: int

    def __post_init__(self) -> None:
        parts = self.accum * self.world
        if self.global_batch % parts:
            raise ValueError(
                f"batch_size {self.global_batch} must be divisible by grad_accum x world size = "
                f"{self.accum} x {self.world} = {parts}"
            )
        if self.dataset_len < self.global_batch:
            raise ValueError(f"the training set has {self.dataset_len} samples, fewer than one batch "
                             f"({self.global_batch}); lower batch_size or add data")

    @property
    def micro_batch(self) -> int:
        return self.global_batch // (self.accum * self.world)

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_len // self.global_batch

    def _permutation(self, epoch: int) -> list[int]:
        cached = self.__dict__.get("_cached")
        if cached is None or cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            cached = (epoch, torch.randperm(self.dataset_len, generator=generator).tolist())
            object.__setattr__(self, "_cached", cached)
        return cached[1]

    def global_indices(self, batch: int) -> list[int]:
        """Sample indices of global batch number `batch` (0-based over the whole run)."""
        epoch, position = divmod(batch, self.batches_per_epoch)
        start = position * self.global_batch
        return self._permutation(epoch)[start:start + self.global_batch]

    def micro_indices(self, batch: int) -> list[list[int]]:
        """This rank's `accum` micro-batches of global batch `batch`."""
        indices = self.global_indices(batch)
        size = self.micro_batch
        return [indices[(m * self.world + self.rank) * size:(m * self.world + self.rank + 1) * size]
                for m in range(self.accum)]

    def iterate(self, start_batch: int) -> Iterator[list[int]]:
        """Micro-batch index lists from global batch `start_batch` on, forever (a DataLoader batch_sampler)."""
        batch = start_batch
        while True:
            yield from self.micro_indices(batch)
            batch += 1

    def state(self, batches_consumed: int) -> dict:
        """JSON data-order state after `batches_consumed` global batches."""
        epoch, position = divmod(batches_consumed, self.batches_per_epoch)
        return {"batches_consumed": batches_consumed, "epoch": epoch, "position": position, "seed": self.seed,
                "dataset_len": self.dataset_len, "global_batch": self.global_batch}

    def check_resumable(self, state: dict) -> None:
        """Raise ValueError when a checkpoint's data order cannot continue with this one."""
        for key in ("seed", "dataset_len", "global_batch"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"cannot resume the data order exactly: the checkpoint has {key} = {state.get(key)}, this run "
                    f"{getattr(self, key)} (same seed, training set and batch_size are needed)"
                )

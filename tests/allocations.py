"""What a piece of tensor code allocates, seen from torch's dispatcher (CPU tests of memory that must not grow)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LargestNewStorage(TorchDispatchMode):
    """While active, records in `largest` the largest storage (bytes) any op returns, except the storages of the
    `kept` tensors (ops returning views of them allocate nothing)."""

    def __init__(self, *kept: torch.Tensor) -> None:
        super().__init__()
        self.kept = {tensor.untyped_storage().data_ptr() for tensor in kept}
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor) and leaf.untyped_storage().data_ptr() not in self.kept:
                self.largest = max(self.largest, leaf.untyped_storage().nbytes())
        return result

"""Gradient (activation) checkpointing of repeated blocks without renaming their parameters.

`checkpoint_blocks(stage.blocks(role))` makes each block's forward recompute its activations in backward
(`torch.utils.checkpoint`, non-reentrant) while training: activation memory falls from O(blocks) to O(1) block
for about one extra forward. Parameter names and `state_dict` keys do not change (the instance's `forward` is
replaced, the module is not wrapped), so checkpoints and exports stay identical. Under no_grad nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_MARK = "_echotorrent_checkpointed"


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(blocks: Iterable[nn.Module]) -> int:
    """Checkpoint every block's forward (idempotent); returns how many blocks were newly wrapped."""
    wrapped = 0
    for block in blocks:
        if getattr(block, _MARK, False):
            continue
        block.forward = functools.partial(_checkpointed, block.forward)
        setattr(block, _MARK, True)
        wrapped += 1
    return wrapped

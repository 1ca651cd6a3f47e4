"""What a piece of work allocates, op by op: shapes of every new tensor (TorchDispatchMode), on any device.

An op's output is a new allocation unless its schema says it aliases an input (views, in-place and `out=` ops).
Works on the meta device, so the real model sizes can be inspected without memory. On meta, SDPA falls back to
its math decomposition (it would materialise the scores); `FusedAttentionOnMeta` stands in the fused kernels
that GPUs (flash / memory-efficient) and CPUs run, allocating what they allocate: the output and the log-sum-exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..config import ModelPreset
from ..models.attention import AttentionMode
from ..models.dit import WanDiT


@dataclass(frozen=True)
class Allocation:
    """One tensor an op allocated."""

    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype, device="meta").element_size()


class AllocationRecorder(TorchDispatchMode):
    """Context manager recording every tensor allocated by aten ops run inside it (`allocations`, in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.allocations: list[Allocation] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        values = out if isinstance(out, (tuple, list)) else (out,)
        for ret, value in zip(func._schema.returns, values):
            if ret.alias_info is not None:
                continue
            for tensor in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(tensor, torch.Tensor):
                    self.allocations.append(Allocation(str(func), tuple(tensor.shape), tensor.dtype))
        return out

    def largest(self) -> Allocation:
        if not self.allocations:
            raise ValueError("nothing was allocated")
        return max(self.allocations, key=lambda a: a.numel)

    def quadratic(self, length: int) -> list[Allocation]:
        """Allocations with at least `length ** 2` elements: an `[L, L]` tensor in any shape (a mask built with
        `repeat_interleave` is allocated as `[L, F, L / F]`, for example)."""
        return [a for a in self.allocations if a.numel >= length * length]


class FusedAttentionOnMeta(TorchFunctionMode):
    """On meta tensors, SDPA allocates only what a fused kernel does: output `[B, H, Lq, Dv]` and the float32
    log-sum-exp `[B, H, Lq]`. Other devices run SDPA unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and args[0].device.type == "meta":
            q, v = args[0], args[2]
            q.new_empty(q.shape[:-1], dtype=torch.float32)
            return q.new_empty((*q.shape[:-1], v.shape[-1]))
        return func(*args, **kwargs)


@dataclass(frozen=True)
class ForwardAllocations:
    """A meta-device forward at a real size: sequence length L, the largest tensor, any of `L * L` elements or
    more, and how many tensors were allocated."""

    tokens: int
    largest: Allocation
    quadratic: tuple[Allocation, ...]
    count: int


def forward_allocations(preset: ModelPreset, frames: int, height: int, width: int, attention: AttentionMode,
                        dtype: torch.dtype = torch.bfloat16) -> ForwardAllocations:
    """Allocations of one `WanDiT.forward` of `frames` latent frames at `height x width` pixels, on meta (nothing
    is computed), autograd on as in training, with fused attention kernels; audio tokens included when the preset
    has an audio adapter. Forward only (the backward of each op allocates about what its forward saved)."""
    h, w = height // preset.vae.spatial_stride, width // preset.vae.spatial_stride
    with torch.device("meta"):
        dit = WanDiT(preset.dit).to(dtype)
        cfg = dit.cfg
        cond = dit.prepare_conditioning(text=torch.zeros(1, cfg.text_len, cfg.text_dim, dtype=dtype))
        if cfg.audio is not None:
            cond = replace(cond, audio=torch.zeros(1, frames, cfg.audio.context_tokens, cfg.audio.token_dim,
                                                   dtype=dtype))
        x = torch.zeros(1, cfg.out_dim, frames, h, w, dtype=dtype)
        t = torch.zeros(1, frames)
        with FusedAttentionOnMeta(), AllocationRecorder() as recorder:
            dit(x, t, cond, attention=attention)
    patch = cfg.patch_size
    tokens = frames * (h // patch[1]) * (w // patch[2])
    return ForwardAllocations(tokens, recorder.largest(), tuple(recorder.quadratic(tokens)),
                              len(recorder.allocations))

"""Multi-process training through `torchrun`: process group, DDP-style gradient averaging, FSDP2 sharding.

- `torchrun --nproc_per_node N ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `init_distributed` joins the group
  (NCCL on CUDA, one GPU per process `cuda:LOCAL_RANK`; gloo on the CPU). Without those variables: one process.
- "ddp": every rank holds the full model; weights are broadcast from rank 0 at start, gradients are averaged over
  ranks once per update (after the last accumulation micro-batch), in flat buckets. This is DDP's arithmetic
  without the DDP wrapper, because stages call their networks' own methods (`forward_chunk`, cache methods) that a
  wrapper would not synchronise. Overlapping communication with backward is left to the FSDP2 path.
- "fsdp": FSDP2 `fully_shard` on each block of `stage.blocks(role)` and then on the role's root module, for the
  1.3B / 14B presets whose weights + Adam state do not fit one GPU (14B fp32 + Adam: about 224 GB). Frozen networks
  (the teacher) are sharded too. Gradients are reduce-scattered by FSDP itself; under bf16 the parameters are
  all-gathered in bf16 and gradients reduced in fp32. It also runs on gloo / CPU (the tests use that).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.utils import _apply_to_tensors

BUCKET_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job. `mode` is "none" for a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    mode: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(preference: str, local_rank: int) -> torch.device:
    """"auto": cuda:LOCAL_RANK when CUDA exists, else cpu; otherwise the named device."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(mode: str, device_preference: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns the context and this rank's device.
    mode: "auto" (ddp when several processes), "none", "ddp" or "fsdp"."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world == 1:
        return DistContext(), device
    if mode == "none":
        raise ValueError(f"[trainer] distributed = \"none\" but torchrun started {world} processes")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda"
                                else None)
    return DistContext(rank=rank, world=world, local_rank=local_rank, mode="ddp" if mode == "auto" else mode), device


def shutdown(ctx: DistContext) -> None:
    """Leave the process group once every rank got here: a rank that tears down gloo while rank 0 still writes
    its export aborts the process ("terminate called without an active exception")."""
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def _comm_device(ctx: DistContext, device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


@torch.no_grad()
def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's parameters and buffers (as DDP does at construction)."""
    if not ctx.active:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Average `.grad` over ranks in flat buckets. A parameter with a gradient on any rank gets one everywhere
    (zeros where it had none), so every rank steps the same set of parameters."""
    if not ctx.active:
        return
    params = list(params)
    if not params:
        return
    device = params[0].device
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    chosen = []
    for p, flag in zip(params, has_grad.tolist()):
        if flag:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            chosen.append(p)
    bucket: list[nn.Parameter] = []
    size = 0
    for p in chosen:
        bucket.append(p)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce_bucket(bucket, ctx)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket, ctx)


def _reduce_bucket(bucket: list[nn.Parameter], ctx: DistContext) -> None:
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in bucket:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat /= ctx.world
        offset = 0
        for p in group:
            count = p.grad.numel()
            p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
            offset += count


def mean_over_ranks(values: dict[str, float], ctx: DistContext, device: torch.device) -> dict[str, float]:
    """Average a dict of floats over ranks (every rank must pass the same keys)."""
    if not ctx.active or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_comm_device(ctx, device))
    dist.all_reduce(tensor)
    return {k: v / ctx.world for k, v in zip(keys, tensor.tolist())}


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one (e.g. a stop request)."""
    if not ctx.active:
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int32, device=_comm_device(ctx, device))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _resolve(module: nn.Module, dotted: str) -> tuple[object, str] | None:
    owner = module
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return (owner, name) if callable(getattr(owner, name, None)) else None


def _hook_dataclass_outputs(output, state):
    """FSDP2 finds output tensors with pytree, which does not look inside dataclasses (e.g. ContextKV): hook those
    tensors too, so the unit is all-gathered again when their gradients arrive (after its post-backward)."""
    if not torch.is_grad_enabled():
        return output

    def hook(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.requires_grad:
            tensor.register_hook(state._pre_backward)
        return tensor

    if dataclasses.is_dataclass(output) or isinstance(output, (tuple, list)):
        return _apply_to_tensors(hook, output) if _contains_dataclass(output) else output
    return output


def _contains_dataclass(value) -> bool:
    if dataclasses.is_dataclass(value):
        return True
    return isinstance(value, (tuple, list)) and any(_contains_dataclass(v) for v in value)


def register_unit_method(unit: nn.Module, owner: object, name: str) -> None:
    """Run FSDP2's pre/post-forward of the sharded `unit` around `owner.name` (a method of the unit or of one of
    its submodules, e.g. a block's `cross_attn.context_kv`), as `register_fsdp_forward_method` does for methods of
    the unit itself: its parameters are all-gathered for the call and its gradients reduce-scattered in backward."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        state = unit._get_fsdp_state()
        args, kwargs = state._pre_forward(unit, args, kwargs)
        output = state._post_forward(unit, args, original(*args, **kwargs))
        return _hook_dataclass_outputs(output, state)

    setattr(owner, name, wrapped)


def shard_module(module: nn.Module, blocks: list[nn.Module], forward_methods: tuple[str, ...],
                 bf16: bool) -> None:
    """FSDP2: `fully_shard` each block, then the root. Every name in `forward_methods` (a method, or a dotted path
    such as "cross_attn.context_kv") that the root or a block has is wrapped so that calling it unshards that unit."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    for unit in [module, *blocks]:
        for dotted in forward_methods:
            found = _resolve(unit, dotted)
            if found is not None:
                register_unit_method(unit, *found)

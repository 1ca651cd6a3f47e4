"""The stage contract: one training stage (what it trains, what it reads, its losses), registered by name.

The trainer (`trainer.py`) knows nothing about avatars; everything model-specific lives in a `Stage` subclass:

```python
@register_stage                       # registry.py; `echotorrent train NAME --config FILE` finds it
class MyStage(Stage):
    name = "my_stage"                 # the registry name
    Config = MyStageConfig            # a dataclass, built from the TOML table [stage] (unknown keys are an error)
    critic_steps = 0                  # critic updates per generator update (DMD: 5); may be set per instance

    def __init__(self, config: MyStageConfig, trainer_config: TrainerConfig, device: torch.device): ...
    def modules(self) -> dict[str, nn.Module]          # trainable networks by role ("generator", "critic", ...)
    def frozen_modules(self) -> dict[str, nn.Module]   # read-only networks (teacher, encoders); default {}
    def param_groups(self, role) -> list[dict]         # optimiser groups of a role; default: its trainable params
    def blocks(self, role) -> list[nn.Module]          # repeated blocks (DiT blocks): checkpointing / FSDP2 units
    def dataset(self, split) -> Dataset | None         # "train" (required) / "heldout" (None: no held-out loss)
    def collate(self, items) -> dict                   # default: torch's default_collate
    def generator_loss(self, batch, step) -> tuple[Tensor, dict[str, float]]
    def critic_loss(self, batch, step) -> tuple[Tensor, dict[str, float]] | None   # default None
    def evaluate(self, step) -> dict[str, float]       # optional held-out evaluation; default {}
    def export(self, out_dir) -> list[Path]            # the trained model files (safetensors) for use
```

What the trainer guarantees and expects:
- Roles. `modules()` is called once after `__init__`; the trainer builds one optimiser per role. A generator update
  steps every role not in `critic_roles` (default `("critic",)`); a critic update steps the critic roles only. The
  trainer moves trainable and frozen modules to `device`, sets `train()` / `eval()` (frozen ones: `eval()` and
  `requires_grad_(False)`), and keeps fp32 master weights; under bf16 autocast the losses run in bf16 on CUDA.
- Calls. Per step: `critic_steps` critic updates (each with its own batches), then one generator update; each update
  is `grad_accum` micro-batches whose loss means are averaged. A loss must be a scalar mean over its micro-batch.
  Inside `generator_loss` call the critic only under `torch.no_grad()` (and the generator inside `critic_loss`):
  gradients flow only into the roles being updated. `step` is the 0-based index of the generator update.
  The log dict of a loss must have the same keys on every rank (they are averaged over ranks).
- Batches. `dataset("train")[i]` returns one sample (a dict of tensors / numbers); `collate` makes a batch; the
  trainer moves every tensor of the batch dict to `device`. For exact resume a sample must be a pure function of
  its index (draw augmentation noise inside the loss, from the global torch RNG, which checkpoints restore).
- Distributed. Under DDP the trainer averages gradients over ranks after the last micro-batch (the stage keeps
  calling its modules' own methods, e.g. `forward_chunk`, which a DDP wrapper would not synchronise). Under FSDP2
  each of `blocks(role)` and then the role's root module are `fully_shard`-ed; methods other than `forward` that
  run a sharded network must be listed in `fsdp_forward_methods`, as names on the root or dotted paths inside a
  block (the DiT: `("prepare_conditioning", "forward_chunk", "cross_attn.context_kv")`). Outside those methods the
  parameters are shards (DTensors): read shapes from configs, make new tensors with `torch.zeros(..., device=,
  dtype=)`, never `param.new_zeros` (that yields a DTensor).
- Gradient checkpointing. When `[trainer] gradient_checkpointing = true`, the forward of every module in
  `blocks(role)` is recomputed in backward (`activation_checkpointing.checkpoint_blocks`); parameter names stay.
- Export and evaluation run with the EMA weights in the EMA'd roles (training weights restored afterwards);
  `export` runs on rank 0 only. `export_weights(role)` returns the full CPU state dict of a role (EMA applied,
  FSDP2 shards gathered); use it, or the modules directly when not sharded.
- `extra_state()` / `load_extra_state()`: JSON-serialisable stage state (counters, running statistics) saved in
  and restored from checkpoints. Module weights, optimiser, EMA and RNG are the trainer's job.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

if TYPE_CHECKING:
    from .config import TrainerConfig

LossResult = tuple[torch.Tensor, dict[str, float]]


class Stage(abc.ABC):
    """One training stage; subclass, set `name` and `Config`, implement the abstract methods, `@register_stage`."""

    name: ClassVar[str]
    Config: ClassVar[type]
    critic_steps: int = 0
    critic_roles: ClassVar[tuple[str, ...]] = ("critic",)
    fsdp_forward_methods: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, trainer_config: "TrainerConfig", device: torch.device) -> None:
        self.config = config
        self.trainer_config = trainer_config
        self.device = torch.device(device)
        self._export_state: dict[str, dict[str, torch.Tensor]] = {}

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Trainable networks by role, e.g. {"generator": dit, "critic": fake_score}. Same objects on every call."""

    def frozen_modules(self) -> dict[str, nn.Module]:
        """Read-only networks (teacher, encoders): never optimised, never EMA'd, never checkpointed."""
        return {}

    def param_groups(self, role: str) -> list[dict]:
        """Optimiser parameter groups for `role` (torch optimiser format; a group may set its own "lr")."""
        return [{"params": [p for p in self.modules()[role].parameters() if p.requires_grad]}]

    def blocks(self, role: str) -> list[nn.Module]:
        """Repeated sub-blocks of `role` (e.g. the DiT blocks): activation-checkpointing and FSDP2 units."""
        return []

    @abc.abstractmethod
    def dataset(self, split: str) -> Dataset | None:
        """Samples of `split` ("train" or "heldout"); None when the stage has no such split."""

    def collate(self, items: list[Any]) -> dict:
        """Batch a list of samples (default: torch's default_collate, which stacks tensors)."""
        return default_collate(items)

    @abc.abstractmethod
    def generator_loss(self, batch: dict, step: int) -> LossResult:
        """(scalar loss of the generator-side roles, logs of floats) for one micro-batch."""

    def critic_loss(self, batch: dict, step: int) -> LossResult | None:
        """(scalar loss of the critic roles, logs) for one micro-batch; None: the stage has no critic."""
        return None

    def evaluate(self, step: int) -> dict[str, float]:
        """Optional held-out evaluation (runs with EMA weights, under no_grad); logged as `eval/<key>`."""
        return {}

    @abc.abstractmethod
    def export(self, out_dir: Path) -> list[Path]:
        """Write the trained model files (safetensors) into `out_dir`; returns their paths."""

    def export_weights(self, role: str) -> dict[str, torch.Tensor]:
        """Full CPU state dict of `role` for export: EMA applied and FSDP2 shards gathered by the trainer."""
        if role in self._export_state:
            return self._export_state[role]
        return {key: value.detach().cpu() for key, value in self.modules()[role].state_dict().items()}

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable stage state saved in checkpoints (default: none)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""

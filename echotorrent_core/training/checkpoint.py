"""Training checkpoints: atomic, pickle-free (safetensors + JSON), resumable bit for bit.

```
OUT/checkpoints/step_00000100/
    model.safetensors       "{role}.{param}"        full weights and buffers of every trainable role
    ema.safetensors         "{role}_ema.{param}"    EMA shadows (absent without EMA)
    optimizer.safetensors   "{role}/{param}/{key}"  optimiser state tensors (Adam exp_avg, exp_avg_sq, step)
    rng_rank{R}.safetensors                          every generator of rank R (rng.py)
    state.json              step, data order, optimiser param groups and non-tensor state, stage state, configs
OUT/checkpoints/latest      "step_00000100": written last, atomically (temp file, then rename)
```
A checkpoint is assembled in `.step_XXXXXXXX.tmp/`, fsync'ed and renamed into place before `latest` moves, so a
crash at any moment leaves the previous checkpoint complete and `latest` pointing at it. The last `keep` are kept.
Weights, optimiser state and EMA are gathered to full tensors (FSDP2 shards too) and written by rank 0; every
rank writes its own RNG file (a shared file system, as multi-node training assumes). On resume, FSDP2 weights and
optimiser state are read by rank 0 and broadcast. `model.safetensors` and `ema.safetensors` use the training
prefixes the model loaders strip (`generator.`, `generator_ema.`), so they also load as plain model files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..checkpoints.safetensors_io import read_state_dict, write_state_dict
from .distributed import DistContext, barrier
from .ema import ParameterEMA
from .rng import capture_rng, restore_rng

FORMAT = "echotorrent-train-checkpoint/1"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class ResumeError(RuntimeError):
    """A checkpoint that cannot be resumed (missing, incomplete, or from a different run layout)."""


@dataclass
class TrainState:
    """What a checkpoint restores besides the tensors: the counters and JSON state of the run."""

    step: int
    batches_consumed: int
    data_order: dict
    stage_state: dict
    meta: dict


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu()


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _flatten_optimizer(role: str, state: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Tensors of an optimiser state dict into `tensors`; the rest (param groups, scalars) returned as JSON."""
    scalars: dict[str, dict] = {}
    for param, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{role}/{param}/{key}"] = _gather(value)
            else:
                scalars.setdefault(param, {})[key] = value
    groups = [{key: list(v) if isinstance(v, tuple) else v for key, v in group.items()}
              for group in state["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(role: str, meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[str, dict] = {}
    prefix = f"{role}/"
    for name, value in tensors.items():
        if name.startswith(prefix):
            param, key = name[len(prefix):].rsplit("/", 1)
            state.setdefault(param, {})[key] = value
    for param, entries in meta["scalars"].items():
        state.setdefault(param, {}).update(entries)
    groups = [{key: tuple(v) if key == "betas" else v for key, v in group.items()} for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


class CheckpointManager:
    """Save and restore the whole training state under `root` (OUT/checkpoints)."""

    def __init__(self, root: str | Path, ctx: DistContext, device: torch.device, keep: int) -> None:
        self.root = Path(root)
        self.ctx = ctx
        self.device = device
        self.keep = keep
        self._gather_options = StateDictOptions(full_state_dict=True, cpu_offload=True)

    # ---------------------------------------------------------------- save
    def save(self, state: TrainState, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             emas: dict[str, ParameterEMA], rng: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the checkpoint of `state.step` (collective: every rank calls it). `rng`: this rank's generator
        states to store instead of the current ones. Returns the final folder."""
        name = step_dir_name(state.step)
        tmp = self.root / f".{name}.tmp"
        model_tensors: dict[str, torch.Tensor] = {}
        ema_tensors: dict[str, torch.Tensor] = {}
        optim_tensors: dict[str, torch.Tensor] = {}
        optim_meta: dict[str, dict] = {}
        for role, module in modules.items():
            for key, value in get_model_state_dict(module, options=self._gather_options).items():
                model_tensors[f"{role}.{key}"] = value.detach().cpu()
            optim_state = get_optimizer_state_dict(module, optimizers[role], options=self._gather_options)
            optim_meta[role] = _flatten_optimizer(role, optim_state, optim_tensors) if self.ctx.is_main else {}
        for role, ema in emas.items():
            for key, value in ema.state_tensors().items():
                ema_tensors[f"{role}_ema.{key}"] = _gather(value)
        if self.ctx.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".step_*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
        barrier(self.ctx)
        try:
            write_state_dict(tmp / f"rng_rank{self.ctx.rank}.safetensors",
                             rng if rng is not None else capture_rng(self.device))
            if self.ctx.is_main:
                self._write_main(tmp, state, model_tensors, ema_tensors, optim_tensors, optim_meta)
            barrier(self.ctx)
            if self.ctx.is_main:
                final = self._publish(tmp, name)
        except BaseException:
            if self.ctx.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        barrier(self.ctx)
        return self.root / name if not self.ctx.is_main else final

    def _write_main(self, tmp: Path, state: TrainState, model_tensors: dict, ema_tensors: dict,
                    optim_tensors: dict, optim_meta: dict) -> None:
        write_state_dict(tmp / "model.safetensors", model_tensors, {"format": FORMAT})
        if ema_tensors:
            write_state_dict(tmp / "ema.safetensors", ema_tensors, {"format": FORMAT})
        if optim_tensors:
            write_state_dict(tmp / "optimizer.safetensors", optim_tensors, {"format": FORMAT})
        document = {
            "format": FORMAT, "step": state.step, "batches_consumed": state.batches_consumed,
            "world_size": self.ctx.world, "data_order": state.data_order, "stage_state": state.stage_state,
            "optimizers": optim_meta, "ema_roles": sorted(r for r in {k.split("_ema.")[0] for k in ema_tensors}),
            **state.meta,
        }
        (tmp / "state.json").write_text(json.dumps(document, indent=1), encoding="utf-8")

    def _publish(self, tmp: Path, name: str) -> Path:
        _fsync_tree(tmp)
        final = self.root / name
        if final.exists():
            trash = self.root / f".{name}.old.tmp"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        _write_text_atomic(self.root / LATEST, name + "\n")
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name: str) -> None:
        steps = sorted(p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))
        for old in steps[:-self.keep]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    # ---------------------------------------------------------------- load
    def latest(self) -> Path | None:
        """The folder `latest` names, or None when no checkpoint was ever completed."""
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        folder = self.root / pointer.read_text(encoding="utf-8").strip()
        if not (folder / "state.json").is_file():
            raise ResumeError(f"{pointer} names {folder.name}, which is missing or incomplete")
        return folder

    def load(self, folder: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             emas: dict[str, ParameterEMA], fsdp: bool) -> TrainState:
        """Restore weights, optimisers, EMA and this rank's RNG from `folder`; returns the counters and JSON state."""
        document = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ResumeError(f"{folder} is not a training checkpoint of this trainer (format {document.get('format')})")
        if document["world_size"] != self.ctx.world and not (folder / f"rng_rank{self.ctx.rank}.safetensors").is_file():
            raise ResumeError(f"{folder} was written by {document['world_size']} processes; rank {self.ctx.rank} of "
                              f"{self.ctx.world} has no RNG state there (resume with the same number of processes)")
        reads = self.ctx.is_main or not fsdp
        model = read_state_dict(folder / "model.safetensors")[0] if reads else {}
        optim = read_state_dict(folder / "optimizer.safetensors")[0] if reads and \
            (folder / "optimizer.safetensors").is_file() else {}
        missing_roles = sorted(set(modules) - {k.split(".", 1)[0] for k in model}) if reads else []
        if missing_roles:
            raise ResumeError(f"{folder}/model.safetensors has no weights for role(s) {', '.join(missing_roles)}")
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=fsdp, strict=True)
        for role, module in modules.items():
            prefix = f"{role}."
            role_state = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
            set_model_state_dict(module, role_state, options=options)
            meta = document["optimizers"].get(role) if reads else None
            if reads and meta is None:
                raise ResumeError(f"{folder} has no optimiser state for role {role}")
            optim_state = _unflatten_optimizer(role, meta, optim) if reads else {}
            set_optimizer_state_dict(module, optimizers[role], optim_state, options=options)
        self._load_ema(folder, emas, document, fsdp)
        restore_rng(read_state_dict(folder / f"rng_rank{self.ctx.rank}.safetensors")[0], self.device)
        barrier(self.ctx)
        meta = {k: v for k, v in document.items() if k not in
                ("step", "batches_consumed", "data_order", "stage_state", "optimizers")}
        return TrainState(step=document["step"], batches_consumed=document["batches_consumed"],
                          data_order=document["data_order"], stage_state=document["stage_state"], meta=meta)

    def _load_ema(self, folder: Path, emas: dict[str, ParameterEMA], document: dict, fsdp: bool) -> None:
        if not emas:
            return
        missing = sorted(set(emas) - set(document["ema_roles"]))
        if missing:
            raise ResumeError(f"{folder} holds no EMA for role(s) {', '.join(missing)} (was EMA enabled?)")
        reads = self.ctx.is_main or not fsdp
        tensors = read_state_dict(folder / "ema.safetensors")[0] if reads else {}
        for role, ema in emas.items():
            prefix = f"{role}_ema."
            if reads:
                role_tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            else:
                role_tensors = {k: torch.empty(v.shape, dtype=torch.float32) for k, v in ema.shadow.items()}
            ema.load_state_tensors(role_tensors)

"""The training loop: stage-agnostic (everything model-specific is the Stage's, see stage.py).

Per step: `critic_steps` critic updates, then one generator update. An update = `grad_accum` micro-batches
(loss / grad_accum, backward), gradients averaged over ranks (DDP) or reduce-scattered (FSDP2), clipped per role,
lr from the schedule, Adam/AdamW step, EMA update. bf16 autocast on CUDA (fp32 master weights), fp32 on the CPU.
Every `log_every` steps a JSONL record (averaged over the steps since the last one and over ranks), every
`eval_every` steps the held-out generator loss + `stage.evaluate` with EMA weights (generators forked, so the
training stream is unchanged), every `checkpoint_every` steps an atomic checkpoint and the loss-curve PNG.
SIGINT / SIGTERM (Ctrl-C, a scheduler's preemption) finish the current step on every rank, save a checkpoint and
return; a resumed run then continues bit for bit as if never stopped. A second Ctrl-C aborts at once. Under
torchrun stop with a signal (torchrun forwards SIGINT / SIGTERM to every worker): all ranks then stop at the same
step; a KeyboardInterrupt raised inside one rank's code cannot be agreed on and is only safe in one process.
Output folder: `checkpoints/`, `log.jsonl`, `loss.png`, `tensorboard/` (optional), `export/` (the trained files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.utils.data import DataLoader
from tqdm import tqdm

from .activation_checkpointing import checkpoint_blocks
from .checkpoint import CheckpointManager, ResumeError, TrainState
from .config import TrainConfig
from .distributed import (
    average_gradients,
    any_rank,
    broadcast_module,
    init_distributed,
    mean_over_ranks,
    shard_module,
    shutdown,
)
from .ema import ParameterEMA
from .logging_jsonl import RunLog, read_log
from .loss_plot import plot_losses
from .optim import build_optimizer, clip_gradients, lr_factor, set_lr
from .rng import capture_rng, restore_rng, seed_everything
from .sampler import DataOrder
from .stage import LossResult, Stage

StepCallback = Callable[["Trainer", int, dict[str, float]], None]


@dataclass
class TrainResult:
    """How a run ended: steps done, whether it was interrupted, the last checkpoint, exported files, and the last
    log record (averaged over its steps and the ranks)."""

    step: int
    interrupted: bool
    checkpoint: Path | None
    exported: list[Path] = field(default_factory=list)
    logs: dict[str, float] = field(default_factory=dict)


def move_to_device(batch, device: torch.device):
    """Every tensor of a (nested) batch on `device`; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


class _StopRequest:
    """SIGINT / SIGTERM set a flag (checked between steps); a second SIGINT raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Trainer:
    """Builds the stage, its optimisers / EMA / data order, and runs (or resumes) the loop."""

    def __init__(self, stage_cls: type[Stage], config: TrainConfig, out_dir: str | Path | None = None,
                 resume: bool = False, callbacks: list[StepCallback] | None = None) -> None:
        if out_dir is not None:
            config = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, out_dir=str(out_dir)))
        self.config = config
        tc = self.tc = config.trainer
        self.out_dir = Path(tc.out_dir)
        self.callbacks = list(callbacks or [])
        self.ctx, self.device = init_distributed(tc.distributed, tc.device)
        self.fsdp = self.ctx.mode == "fsdp"
        self.bf16 = tc.precision == "bf16" or (tc.precision == "auto" and self.device.type == "cuda")
        seed_everything(tc.seed)
        self.stage = stage_cls(config.stage, tc, self.device)
        self.modules = self._prepare_modules()
        self.optimizers = {role: build_optimizer(self.stage.param_groups(role), tc, role in self.stage.critic_roles)
                           for role in self.modules}
        self.emas = self._build_emas()
        seed_everything(tc.seed + 7919 * self.ctx.rank)
        self.train_set = self.stage.dataset("train")
        if self.train_set is None:
            raise ValueError(f"stage '{self.stage.name}' returned no training set")
        self.heldout_set = self.stage.dataset("heldout") if tc.eval_every else None
        self.order = DataOrder(len(self.train_set), tc.batch_size, tc.grad_accum, self.ctx.world, self.ctx.rank,
                               tc.seed)
        self.checkpoints = CheckpointManager(self.out_dir / "checkpoints", self.ctx, self.device,
                                             tc.keep_checkpoints)
        self.step = 0
        self.batches_consumed = 0
        self.last_checkpoint: Path | None = None
        self._resume(resume)
        self.log = RunLog(self.out_dir / "log.jsonl", self.out_dir / "tensorboard" if tc.tensorboard else None) \
            if self.ctx.is_main else None
        if self.log is not None:
            self.log.truncate_after(self.step)

    # ------------------------------------------------------------------ set-up
    def _prepare_modules(self) -> dict[str, nn.Module]:
        modules = self.stage.modules()
        frozen = self.stage.frozen_modules()
        if not modules:
            raise ValueError(f"stage '{self.stage.name}' has no trainable modules")
        overlap = sorted(set(modules) & set(frozen))
        if overlap:
            raise ValueError(f"stage '{self.stage.name}': role(s) {overlap} are both trainable and frozen")
        for name, module in frozen.items():
            module.to(self.device).eval().requires_grad_(False)
        for role, module in modules.items():
            module.to(self.device).train()
            if self.tc.gradient_checkpointing:
                checkpoint_blocks(self.stage.blocks(role))
        for name, module in {**modules, **frozen}.items():
            if self.fsdp:
                shard_module(module, self.stage.blocks(name), self.stage.fsdp_forward_methods, self.bf16)
            elif self.ctx.active:
                broadcast_module(module, self.ctx)
        return modules

    def _build_emas(self) -> dict[str, ParameterEMA]:
        if self.tc.ema_decay == 0:
            return {}
        roles = self.tc.ema_roles if self.tc.ema_roles is not None else \
            [r for r in self.modules if r not in self.stage.critic_roles]
        unknown = sorted(set(roles) - set(self.modules))
        if unknown:
            raise ValueError(f"[trainer] ema_roles names {unknown}, not roles of stage '{self.stage.name}' "
                             f"({', '.join(self.modules)})")
        return {role: ParameterEMA(self.modules[role], self.tc.ema_decay, self.tc.ema_start_step) for role in roles}

    def _resume(self, resume: bool) -> None:
        folder = self.checkpoints.latest()
        if folder is None:
            if resume and self.ctx.is_main:
                print(f"no checkpoint in {self.checkpoints.root}; starting from step 0")
            return
        if not resume:
            raise ResumeError(f"{self.out_dir} already holds checkpoints (latest {folder.name}); resume them with "
                              "--resume or choose another --out (nothing was overwritten)")
        state = self.checkpoints.load(folder, self.modules, self.optimizers, self.emas, self.fsdp)
        if state.meta.get("stage") != self.stage.name:
            raise ResumeError(f"{folder} was written by stage '{state.meta.get('stage')}', not '{self.stage.name}'")
        self.order.check_resumable(state.data_order)
        self.stage.load_extra_state(state.stage_state)
        self.step, self.batches_consumed, self.last_checkpoint = state.step, state.batches_consumed, folder

    def _loader(self, start_batch: int) -> Iterator[dict]:
        loader = DataLoader(self.train_set, batch_sampler=self.order.iterate(start_batch),
                            collate_fn=self.stage.collate, num_workers=self.tc.num_workers,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.tc.seed))
        return iter(loader)

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ one update
    def _update(self, roles: list[str], loss_fn: Callable[[dict, int], LossResult | None], kind: str,
                batches: Iterator[dict]) -> dict[str, float]:
        for role in roles:
            self.optimizers[role].zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for _ in range(self.tc.grad_accum):
            batch = move_to_device(next(batches), self.device)
            with self._autocast():
                result = loss_fn(batch, self.step)
            if result is None:
                raise ValueError(f"stage '{self.stage.name}' has critic_steps > 0 but critic_loss returned None")
            loss, logs = result
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"step {self.step}: the {kind} loss is {value} (logs {logs}); the last "
                                         f"checkpoint is {self.last_checkpoint}")
            (loss / self.tc.grad_accum).backward()
            for key, item in {f"loss/{kind}": value, **logs}.items():
                totals[key] = totals.get(key, 0.0) + float(item) / self.tc.grad_accum
        factor = lr_factor(self.step, self.tc)
        for role in roles:
            params = [p for group in self.optimizers[role].param_groups for p in group["params"]]
            if self.ctx.mode == "ddp":
                average_gradients(params, self.ctx)
            totals[f"grad_norm/{role}"] = clip_gradients(params, self.tc.grad_clip)
            totals[f"lr/{role}"] = set_lr(self.optimizers[role], factor)
            self._weights_touched = True
            self.optimizers[role].step()
            if role in self.emas:
                self.emas[role].update(self.step)
        self.batches_consumed += 1
        return totals

    def _train_step(self, batches: Iterator[dict]) -> dict[str, float]:
        generator_roles = [r for r in self.modules if r not in self.stage.critic_roles]
        critic_roles = [r for r in self.modules if r in self.stage.critic_roles]
        logs: dict[str, float] = {}
        if self.stage.critic_steps and not critic_roles:
            raise ValueError(f"stage '{self.stage.name}' asks for {self.stage.critic_steps} critic steps but has no "
                             f"critic role ({', '.join(self.stage.critic_roles)})")
        for _ in range(self.stage.critic_steps):
            for key, value in self._update(critic_roles, self.stage.critic_loss, "critic", batches).items():
                logs[key] = logs.get(key, 0.0) + value / self.stage.critic_steps
        if generator_roles:
            logs.update(self._update(generator_roles, self.stage.generator_loss, "generator", batches))
        return logs

    # ------------------------------------------------------------------ evaluation / export
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """The EMA weights in their roles for the duration (training weights restored after)."""
        with contextlib.ExitStack() as stack:
            for ema in self.emas.values():
                stack.enter_context(ema.applied())
            yield

    def _heldout_batches(self) -> Iterator[dict]:
        size = max(1, self.tc.batch_size // self.ctx.world)
        for k in range(self.tc.eval_batches):
            start = (k * self.ctx.world + self.ctx.rank) * size
            if start + size > len(self.heldout_set):
                return
            yield self.stage.collate([self.heldout_set[i] for i in range(start, start + size)])

    def evaluate(self) -> dict[str, float]:
        """Held-out generator loss (mean over `eval_batches` batches) and `stage.evaluate`, with EMA weights."""
        snapshot = capture_rng(self.device)
        for module in self.modules.values():
            module.eval()
        totals: dict[str, float] = {}
        count = 0
        try:
            with self.ema_weights(), torch.no_grad():
                if self.heldout_set is not None:
                    for batch in self._heldout_batches():
                        with self._autocast():
                            loss, logs = self.stage.generator_loss(move_to_device(batch, self.device), self.step)
                        for key, value in {"loss/generator": float(loss), **logs}.items():
                            totals[key] = totals.get(key, 0.0) + float(value)
                        count += 1
                    totals = {key: value / count for key, value in totals.items()} if count else {}
                totals.update({f"eval/{k}": float(v) for k, v in self.stage.evaluate(self.step).items()})
        finally:
            for module in self.modules.values():
                module.train()
            restore_rng(snapshot, self.device)
        return mean_over_ranks(totals, self.ctx, self.device)

    def export(self) -> list[Path]:
        """Write the stage's model files into OUT/export (EMA weights where EMA is on); rank 0 writes."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        with self.ema_weights():
            self.stage._export_state = {role: get_model_state_dict(module, options=options)
                                        for role, module in self.modules.items()}
            try:
                files = self.stage.export(self.out_dir / "export") if self.ctx.is_main else []
            finally:
                self.stage._export_state = {}
        return files

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, rng: dict[str, torch.Tensor] | None = None) -> Path:
        """Checkpoint the state after `self.step` completed steps (collective); also redraws the loss PNG."""
        meta = {"stage": self.stage.name, "source": self.config.source,
                "trainer_config": dataclasses.asdict(self.tc), "stage_config": dataclasses.asdict(self.config.stage)}
        state = TrainState(step=self.step, batches_consumed=self.batches_consumed,
                           data_order=self.order.state(self.batches_consumed), stage_state=self.stage.extra_state(),
                           meta=meta)
        self.last_checkpoint = self.checkpoints.save(state, self.modules, self.optimizers, self.emas, rng=rng)
        if self.ctx.is_main:
            plot_losses(read_log(self.log.path), self.out_dir / "loss.png", title=f"{self.stage.name}")
        return self.last_checkpoint

    # ------------------------------------------------------------------ the loop
    def _write_log(self, window: list[dict[str, float]], seconds: float) -> dict[str, float]:
        keys = sorted({k for logs in window for k in logs})
        mean = {k: sum(logs.get(k, 0.0) for logs in window) / len(window) for k in keys}
        mean = mean_over_ranks(mean, self.ctx, self.device)
        mean["seconds_per_step"] = seconds / len(window)
        if self.log is not None:
            self.log.write("train", self.step, mean)
        return mean

    def run(self) -> TrainResult:
        """Train from `self.step` to `trainer.steps`; returns early (checkpoint saved) on SIGINT / SIGTERM."""
        tc = self.tc
        batches = self._loader(self.batches_consumed)
        bar = tqdm(total=tc.steps, initial=self.step, desc=f"train {self.stage.name}", unit="step",
                   disable=not self.ctx.is_main, dynamic_ncols=True)
        window: list[dict[str, float]] = []
        logged: dict[str, float] = {}
        interrupted = False
        window_start = time.perf_counter()
        saved_at = self.step if self.last_checkpoint is not None else None
        with _StopRequest() as stop:
            while self.step < tc.steps:
                if any_rank(stop.requested, self.ctx, self.device):
                    interrupted = True
                    break
                snapshot, batches_before = capture_rng(self.device), self.batches_consumed
                self._weights_touched = False
                try:
                    logs = self._train_step(batches)
                except KeyboardInterrupt:
                    interrupted = True
                    if self._weights_touched:
                        bar.close()
                        print(f"interrupted inside step {self.step} after weights changed: not saved; resume from "
                              f"{self.last_checkpoint}")
                        return TrainResult(self.step, True, self.last_checkpoint)
                    self.batches_consumed = batches_before
                    restore_rng(snapshot, self.device)
                    break
                self.step += 1
                window.append(logs)
                bar.update(1)
                bar.set_postfix({k.split("/", 1)[-1] if k.startswith("loss/") else k: f"{v:.4g}"
                                 for k, v in logs.items() if k.startswith(("loss/", "grad_norm/"))}, refresh=False)
                for callback in self.callbacks:
                    callback(self, self.step, logs)
                if self.step % tc.log_every == 0 or self.step == tc.steps:
                    logged = self._write_log(window, time.perf_counter() - window_start)
                    window, window_start = [], time.perf_counter()
                if tc.eval_every and self.step % tc.eval_every == 0:
                    evaluation = self.evaluate()
                    if self.log is not None and evaluation:
                        self.log.write("eval", self.step, evaluation)
                if self.step % tc.checkpoint_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
        bar.close()
        if window:
            logged = self._write_log(window, time.perf_counter() - window_start)
        if saved_at != self.step:
            self.save_checkpoint()
        exported = [] if interrupted else self.export()
        if interrupted and self.ctx.is_main:
            print(f"stopped at step {self.step}: checkpoint {self.last_checkpoint}; continue with --resume")
        return TrainResult(self.step, interrupted, self.last_checkpoint, exported, logged)

    def close(self) -> None:
        """Close the log and leave the process group."""
        if self.log is not None:
            self.log.close()
        shutdown(self.ctx)

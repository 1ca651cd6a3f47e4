"""Optimisers per role, the learning-rate schedule (linear warm-up, then constant or cosine) and gradient clipping.

The schedule is a pure function of the step, so it needs no state of its own in checkpoints: the trainer sets
every group's lr to `group["base_lr"] * lr_factor(step)` before each update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .config import TrainerConfig


def _hyperparameters(config: TrainerConfig, critic: bool) -> tuple[float, tuple[float, float], float]:
    if not critic:
        return config.lr, tuple(config.betas), config.weight_decay
    return (config.critic_lr if config.critic_lr is not None else config.lr,
            tuple(config.critic_betas if config.critic_betas is not None else config.betas),
            config.critic_weight_decay if config.critic_weight_decay is not None else config.weight_decay)


def build_optimizer(groups: list[dict], config: TrainerConfig, critic: bool) -> torch.optim.Optimizer:
    """Adam or AdamW over `groups` (a group's own "lr" is kept as its base lr); critic roles use the critic_*
    overrides where set. Every group gets a `base_lr` entry for the schedule."""
    lr, betas, weight_decay = _hyperparameters(config, critic)
    groups = [dict(group) for group in groups]
    for group in groups:
        group.setdefault("lr", lr)
        group["base_lr"] = group["lr"]
        group["params"] = list(group["params"])
    if not any(group["params"] for group in groups):
        raise ValueError("a trainable role has no parameters that require gradients")
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=lr, betas=betas, eps=config.eps, weight_decay=weight_decay)


def lr_factor(step: int, config: TrainerConfig) -> float:
    """Multiplier of the base lr at update `step` (0-based): linear warm-up over `warmup_steps` (from 1/warmup),
    then constant, or cosine towards `min_lr_ratio` (reached one step after the last)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to base_lr * factor; returns the first group's lr (for logs)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Total L2 norm of the gradients before clipping; scales them to `max_norm` when larger (0: no clipping).
    Works on plain tensors and FSDP2 DTensor shards (the norm is then the global one)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)

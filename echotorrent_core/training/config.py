"""Training configs as TOML: a [trainer] table (TrainerConfig) and a [stage] table (the stage's Config dataclass).

```toml
[trainer]
steps = 2000
batch_size = 16          # global batch per optimiser step (all ranks x all accumulation micro-batches)
lr = 1e-4
betas = [0.0, 0.999]     # DMD: beta1 = 0
[stage]
...                      # fields of the stage's Config dataclass
```
Unknown keys, missing required keys and wrongly typed values are errors that name the key and the file.
`--set trainer.lr=3e-5` / `--set stage.width=64` overrides (values parsed as TOML, bare words as strings).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file and the key."""


@dataclass
class TrainerConfig:
    """Everything the trainer loop needs; stage-independent. Defaults suit a small CPU run."""

    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    critic_lr: float | None = None
    critic_betas: tuple[float, float] | None = None
    critic_weight_decay: float | None = None
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    ema_roles: list[str] | None = None
    ema_start_step: int = 0
    seed: int = 0
    out_dir: str = "runs/train"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0
    eval_batches: int = 4
    log_every: int = 10
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    distributed: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    gradient_checkpointing: bool = False
    num_workers: int = 0
    tensorboard: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "eval_batches",
                    "log_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"[trainer] {key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "eval_every", "num_workers", "ema_start_step"):
            if getattr(self, key) < 0:
                raise ConfigError(f"[trainer] {key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"[trainer] ema_decay must be in [0, 1) (0 = no EMA), got {self.ema_decay}")
        if self.grad_clip < 0:
            raise ConfigError(f"[trainer] grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip}")
        if self.lr <= 0:
            raise ConfigError(f"[trainer] lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"[trainer] min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainConfig:
    """A parsed config file: the trainer table, the stage's Config instance and where it came from."""

    trainer: TrainerConfig
    stage: Any
    source: str = "<defaults>"
    raw: dict = field(default_factory=dict)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check / convert one TOML value against a dataclass field type (int, float, bool, str, Path, Literal, tuple,
    list, dict, Optional, nested dataclass)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(hint)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build_dataclass(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str or hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return Path(value) if hint is Path else value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    return value


def build_dataclass(cls: type, table: dict, where: str) -> Any:
    """Instantiate dataclass `cls` from a TOML table; errors name `where` (e.g. "run.toml [stage]") and the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(fields))}")
    missing = [name for name, f in fields.items() if name not in table and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    values = {key: _convert(value, hints[key], f"{where} {key}") for key, value in table.items()}
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. trainer.lr=3e-5")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in ("trainer", "stage") or not all(path):
        raise ConfigError(f"--set {text!r}: the key must start with trainer. or stage., e.g. stage.width=64")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a parsed TOML document (a new dict; the input is not changed)."""
    result = {section: dict(table) for section, table in raw.items()}
    for text in overrides:
        path, value = _parse_override(text)
        table = result.setdefault(path[0], {})
        for part in path[1:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        table[path[-1]] = value
    return result


def parse_config(raw: dict, stage_config: type, source: str = "<dict>") -> TrainConfig:
    """Validate a TOML document (already parsed) into a TrainConfig for a stage whose Config is `stage_config`."""
    unknown = sorted(set(raw) - {"trainer", "stage"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}; expected [trainer] and [stage]")
    for section in ("trainer", "stage"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}])")
    trainer = build_dataclass(TrainerConfig, raw.get("trainer", {}), f"{source} [trainer]")
    stage = build_dataclass(stage_config, raw.get("stage", {}), f"{source} [stage]")
    return TrainConfig(trainer=trainer, stage=stage, source=source, raw=raw)


def load_config(path: str | Path | None, stage_config: type, overrides: list[str] = ()) -> TrainConfig:
    """Read a TOML file (None: defaults only), apply `--set` overrides, validate against the stage's Config."""
    if path is None:
        raw, source = {}, "<defaults>"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"training config not found: {path} (expected a .toml file)")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        source = str(path)
    return parse_config(apply_overrides(raw, list(overrides)), stage_config, source)


def config_to_dict(config: Any) -> dict:
    """A dataclass config as plain JSON-able values (tuples become lists)."""
    return dataclasses.asdict(config)

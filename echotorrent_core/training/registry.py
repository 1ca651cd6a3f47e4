"""Stage names -> Stage classes. `@register_stage` adds a class; the built-in stages under `training/stages/` are
imported on the first lookup, so a new stage file needs no edit anywhere else."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from .stage import Stage

_STAGES: dict[str, type[Stage]] = {}
_BUILTINS_PACKAGE = f"{__package__}.stages"
_builtins_loaded = False


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: register `cls` under `cls.name`. Raises ValueError on a bad or duplicate stage."""
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise ValueError(f"register_stage expects a Stage subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"stage {cls.__qualname__} needs a non-empty class attribute `name`")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise ValueError(f"stage '{name}' needs a dataclass class attribute `Config`, got {config!r}")
    existing = _STAGES.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"stage name '{name}' is already registered by {existing.__module__}.{existing.__qualname__}")
    _STAGES[name] = cls
    return cls


def unregister_stage(name: str) -> None:
    """Remove a stage (tests registering throw-away stages)."""
    _STAGES.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    try:
        package = importlib.import_module(_BUILTINS_PACKAGE)
    except ModuleNotFoundError as error:
        if error.name != _BUILTINS_PACKAGE:
            raise
        return
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{_BUILTINS_PACKAGE}.{module.name}")


def get_stage(name: str) -> type[Stage]:
    """The Stage class registered as `name` (the built-ins are imported only when it is not registered yet);
    KeyError naming the known stages otherwise."""
    if name not in _STAGES:
        _load_builtins()
    if name not in _STAGES:
        raise KeyError(f"unknown training stage '{name}'; known stages: {', '.join(stage_names()) or 'none'}")
    return _STAGES[name]


def stage_names() -> list[str]:
    """Sorted names of every registered stage (built-ins included)."""
    _load_builtins()
    return sorted(_STAGES)

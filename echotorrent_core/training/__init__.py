"""Training framework: stages registered by name (`stage.py`, `registry.py`), TOML configs (`config.py`), the loop
(`trainer.py`), exact-resume checkpoints (`checkpoint.py`), torchrun DDP / FSDP2 (`distributed.py`)."""

from .config import ConfigError, TrainConfig, TrainerConfig, load_config
from .registry import get_stage, register_stage, stage_names
from .stage import Stage

__all__ = ["ConfigError", "Stage", "TrainConfig", "TrainerConfig", "get_stage", "load_config", "register_stage",
           "stage_names"]

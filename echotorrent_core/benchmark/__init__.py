"""Benchmark of the streaming sampler against the windowed bidirectional baseline and prefix recomputation."""

from .inputs import random_inputs, random_models
from .memory import MemoryProbe, MemorySample
from .probes import ModelProbe
from .records import MemoryCheckpoint, RunRecord, StepRecord
from .runs import run_stream, run_windows

__all__ = [
    "MemoryCheckpoint",
    "MemoryProbe",
    "MemorySample",
    "ModelProbe",
    "RunRecord",
    "StepRecord",
    "random_inputs",
    "random_models",
    "run_stream",
    "run_windows",
]

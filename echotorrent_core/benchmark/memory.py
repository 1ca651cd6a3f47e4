"""Memory probes: process peak / current RSS on the CPU (Linux /proc), allocator peak / current on CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemorySample:
    """Peak bytes since the last `MemoryProbe.reset_peak` and bytes in use now."""

    peak_bytes: int
    current_bytes: int


def _status_bytes(*fields: str) -> list[int]:
    """The named `kB` fields of one read of /proc/self/status (one read, so VmHWM >= VmRSS holds), in bytes."""
    values = {}
    for line in _STATUS.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            values[name] = int(rest.split()[0]) * 1024
    missing = [field for field in fields if field not in values]
    if missing:
        raise RuntimeError(f"{missing} missing from {_STATUS}")
    return [values[field] for field in fields]


class MemoryProbe:
    """CPU: process VmHWM / VmRSS (Linux; the peak is reset through clear_refs). CUDA: torch's allocator stats."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        if not self.is_cuda and not _STATUS.is_file():
            raise RuntimeError("CPU memory probes read /proc/self/status (Linux only)")

    @property
    def source(self) -> str:
        """What the numbers are, for table captions."""
        if self.is_cuda:
            return "torch.cuda.max_memory_allocated / memory_allocated"
        return "process VmHWM / VmRSS from /proc/self/status"

    def reset_peak(self) -> None:
        """Start a new peak measurement from the memory in use now."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _CLEAR_REFS.write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS

    def sample(self) -> MemorySample:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)
            return MemorySample(torch.cuda.max_memory_allocated(self.device), torch.cuda.memory_allocated(self.device))
        return MemorySample(*_status_bytes("VmHWM", "VmRSS"))

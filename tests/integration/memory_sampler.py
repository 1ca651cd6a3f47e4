"""A process's memory from /proc for the memory tests: its peak resident set since a reset (VmHWM after writing
"5" to /proc/PID/clear_refs, Linux >= 4.0) and a background sampler of its resident set (VmRSS) over time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pack_files import process_memory

SAMPLE_SECONDS = 0.2


def reset_peak(pid: int) -> None:
    """Restart the peak resident set (VmHWM) of process `pid` at its current resident set; raises when the kernel
    does not reset it (a peak that silently kept an earlier maximum would make every later figure meaningless)."""
    before = process_memory(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    after = process_memory(pid)
    stale = before["VmHWM"] > max(before["VmRSS"], after["VmRSS"]) + 2**20  # an old peak above the set now
    if stale and after["VmHWM"] >= before["VmHWM"]:
        raise RuntimeError(f"/proc/{pid}/clear_refs did not reset VmHWM ({before} -> {after}); needs Linux >= 4.0")


class RssSampler:
    """Samples VmRSS of process `pid` every `interval` seconds in a thread while in the `with` block:
    `samples` is a list of (seconds since the start, VmRSS bytes)."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        self.samples.append((time.monotonic() - self._started, process_memory(self.pid)["VmRSS"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def between(self, start: float, stop: float) -> list[tuple[float, int]]:
        """The samples taken from `start` to `stop` seconds after the sampler started."""
        return [(at, rss) for at, rss in self.samples if start <= at <= stop]

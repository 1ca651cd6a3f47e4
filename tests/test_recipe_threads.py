"""The recipe runs its first two stages side by side only when their torch threads fit the CPUs."""

import pytest

from echotorrent_core.recipes import default_model


@pytest.mark.parametrize("cpus, jobs, threads, omp, expected", [
    (2, 2, 2, None, 1),   # two 2-thread stages would oversubscribe 2 cores
    (2, 2, None, "2", 1),  # the same through OMP_NUM_THREADS
    (2, 2, 1, None, 2),
    (2, 2, None, None, 2),  # CPUs // 2 = 1 thread each
    (8, 2, 2, None, 2),
    (8, 1, None, None, 1),
])
def test_side_by_side_stages(monkeypatch, cpus, jobs, threads, omp, expected) -> None:
    monkeypatch.setattr(default_model.os, "cpu_count", lambda: cpus)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert default_model.side_by_side_stages(jobs, threads) == expected

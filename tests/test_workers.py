"""runtime/workers.py: the CPUs this process may use, and the one worker pool."""

from __future__ import annotations

import os

import pytest

from glmocr_lf.data.imagecheck import ImageChecker
from glmocr_lf.runtime.workers import usable_cpus, worker_pool


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_image_checks_use_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned to one CPU (taskset, a Slurm step) on a 64-core machine: no pool of 64 processes (the
    image checker counted the machine's CPUs while the scorer and the fit counted the affinity)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus() == 1
    with ImageChecker(expected=10_000) as checker:
        assert checker._pool is None


def test_worker_pool_runs_work_in_other_processes() -> None:
    with worker_pool(2) as pool:
        pids = set(pool.map(_pid, range(8), chunksize=1))
    assert pids and os.getpid() not in pids


def _pid(_: int) -> int:
    return os.getpid()

"""Work spread over local worker processes: how many CPUs this process may use, and the pool."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.pool import Pool


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a Slurm allocation or taskset),
    not the machine's count; the machine's where the OS has no affinity."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_pool(workers: int) -> Pool:
    """A pool of `workers` processes, forked where the OS can: workers inherit the loaded code (no
    re-import), and callers need no `if __name__ == "__main__"` guard."""
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers)

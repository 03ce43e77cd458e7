"""What accelerators this machine has, read from nvidia-smi (run by runtime/process.py; no torch import)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import lru_cache

from glmocr_lf.runtime.process import run_captured


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int
    compute_capability: tuple[int, int]

    @property
    def bf16(self) -> bool:
        return self.compute_capability >= (8, 0)

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


@lru_cache(maxsize=1)
def gpus() -> tuple[Gpu, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    proc = run_captured([exe, "--query-gpu=index,name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
                        timeout_s=20)
    if not proc.ok:
        return ()
    found = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            major, _, minor = parts[3].partition(".")
            found.append(Gpu(int(parts[0]), parts[1], int(float(parts[2])), (int(major), int(minor or 0))))
        except ValueError:
            continue
    return tuple(found)


def has_bf16_gpu() -> bool:
    return any(g.bf16 for g in gpus())

"""What this machine offers a run, probed in one place: GPUs (nvidia-smi), the installed stack and
optional packages (package metadata), CPUs, executables and importable modules (found, never imported).

Planning, `config validate` and `doctor` read one `Host`; tests pass a fake one instead of patching probes.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack, installed
from glmocr_lf.runtime.workers import usable_cpus

# Executables a launch may need, and packages beyond the stack whose version decides something.
EXECUTABLES = ("llamafactory-cli", "torchrun")
OPTIONAL_DISTS = ("liger-kernel", "modelscope")


def find_module(module: str) -> bool:
    """Whether `import module` would find it, without importing it (or torch)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def executable(name: str) -> str | None:
    """A console script of the environment we run in (beside our interpreter, so an unactivated
    venv works), else the one on PATH; None when there is none."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


@dataclass(frozen=True)
class Host:
    """One machine as planning and doctor see it; `Host.detect()` probes this one."""

    gpus: tuple[Gpu, ...] = ()
    stack: Stack = field(default_factory=Stack)
    cpus: int = 1
    executables: Mapping[str, str] = field(default_factory=dict)  # name -> path; absent: not installed
    dists: Mapping[str, str] = field(default_factory=dict)  # OPTIONAL_DISTS installed -> version
    importable: Callable[[str], bool] = find_module

    @classmethod
    def detect(cls) -> Host:
        from glmocr_lf.runtime import machine

        found = {name: path for name in EXECUTABLES if (path := executable(name)) is not None}
        dists = {name: version for name in OPTIONAL_DISTS if (version := installed(name)) is not None}
        return cls(machine.gpus(), Stack.detect(), usable_cpus(), found, dists)

    def executable(self, name: str) -> str | None:
        return self.executables.get(name)

    def installed(self, dist: str) -> str | None:
        return self.stack.get(dist) if dist in self.stack.versions else self.dists.get(dist)

    def any_importable(self, modules: tuple[str, ...]) -> bool:
        return any(self.importable(m) for m in modules)

    @property
    def has_bf16_gpu(self) -> bool:
        return any(g.bf16 for g in self.gpus)

"""Fit a run to the machine: settings that change speed and memory, never the maths of training.

Every change is returned with its reason; `train --dry-run` prints them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.machine import Gpu


@dataclass
class Fit:
    values: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fit_to_hardware(cfg: TrainConfig, values: dict[str, Any], *, gpus: tuple[Gpu, ...],
                    memory_budget_gib: float | None, processes: int) -> Fit:
    fit = Fit()
    cpus = cpu_count()
    per_process = max(1, cpus // max(processes, 1))
    for key in ("preprocessing_num_workers", "dataloader_num_workers"):
        wanted = values.get(key)
        if isinstance(wanted, int) and wanted > per_process:
            fit.values[key] = per_process
            fit.reasons.append(f"{key}: {wanted} -> {per_process} ({cpus} CPUs for {processes} process(es))")
    return fit

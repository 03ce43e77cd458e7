"""Validate config files: structural and rule errors, plus warnings about this machine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.config.load import load_config
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.errors import ConfigError, Problem
from glmocr_lf.machine import Gpu
from glmocr_lf.machine import gpus as detect_gpus


def machine_problems(cfg: TrainConfig, gpus: tuple[Gpu, ...] | None = None) -> list[Problem]:
    """Things that depend on where the config runs: a warning when validating, an error at launch."""
    gpus = detect_gpus() if gpus is None else gpus
    out = []
    if cfg.train.bf16 and not any(g.bf16 for g in gpus):
        out.append(Problem("train.bf16", "this machine has no GPU with bf16 (compute capability >= 8.0); "
                                         "training here would fail: set bf16: false to train in fp32"))
    return out


@dataclass
class FileReport:
    path: Path
    config: TrainConfig | None = None
    error: ConfigError | None = None
    warnings: list[Problem] = field(default_factory=list)


def validate_files(paths: Iterable[Path]) -> list[FileReport]:
    reports = []
    for path in paths:
        report = FileReport(path)
        try:
            report.config = load_config(path)
        except ConfigError as exc:
            report.error = exc
        else:
            report.warnings = machine_problems(report.config)
        reports.append(report)
    return reports

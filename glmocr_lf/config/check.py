"""Validate config files: structural and rule errors, plus warnings about this machine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.config.lfkeys import Unavailable
from glmocr_lf.config.lfrules import lf_machine_problems, lf_rule_warnings
from glmocr_lf.config.load import load_config
from glmocr_lf.config.models import UNCHECKED, TrainConfig
from glmocr_lf.runtime.errors import ConfigError, Problem
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.machine import gpus as detect_gpus
from glmocr_lf.runtime.versions import Stack


def machine_problems(cfg: TrainConfig, gpus: tuple[Gpu, ...] | None = None,
                     stack: Stack | None = None) -> list[Problem]:
    """Things that depend on where the config runs: a warning when validating, an error at launch
    (train's pre-flight): bf16, fa2 on a transformers that breaks it, quantization, liger kernel,
    and every tracker in report_to importable."""
    gpus = detect_gpus() if gpus is None else gpus
    stack = stack or Stack.detect()
    out = []
    broken = stack.fa2_broken() if cfg.model.flash_attn == "fa2" else None
    if broken:
        out.append(Problem("model.flash_attn", f"{broken}: use auto or sdpa"))
    if cfg.train.bf16 and not any(g.bf16 for g in gpus):
        out.append(Problem("train.bf16", "this machine has no GPU with bf16 (compute capability >= 8.0); "
                                         "training here would fail: set bf16: false to train in fp32"))
    out.extend(lf_machine_problems(cfg, gpus))
    return out


def config_warnings(cfg: TrainConfig) -> list[Problem]:
    """The config works, but not as it reads: keys that could not be checked here, keys that do
    nothing for GLM-OCR, packing dropping long samples. Shown by `config validate` and `train`."""
    from glmocr_lf.config.lfkeys import load_table

    reason = ""
    if UNCHECKED in cfg.passthrough:  # only there when the table could not be read
        table = load_table()
        reason = table.reason if isinstance(table, Unavailable) else "the table was not available"
    return lf_rule_warnings(cfg, reason)


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
            report.warnings = config_warnings(report.config) + machine_problems(report.config)
        reports.append(report)
    return reports

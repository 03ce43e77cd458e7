"""Validate config files: structural and rule errors, plus warnings (the rule table's warnings, keys
that could not be checked, and what this machine lacks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.config.lfkeys import Unavailable
from glmocr_lf.config.load import load_config
from glmocr_lf.config.models import KEY_SECTION, UNCHECKED, TrainConfig
from glmocr_lf.config.rules import machine_problems, rule_problems
from glmocr_lf.runtime.errors import ConfigError, Problem, nearest
from glmocr_lf.runtime.host import Host


def unchecked_warnings(cfg: TrainConfig) -> list[Problem]:
    """Keys that could not be checked here (no LLaMA-Factory key table), and why."""
    from glmocr_lf.config.lfkeys import load_table

    if UNCHECKED not in cfg.passthrough:  # only there when the table could not be read
        return []
    table = load_table()
    reason = table.reason if isinstance(table, Unavailable) else "the table was not available"
    out = []
    for key in cfg.passthrough[UNCHECKED]:
        near = nearest(key, KEY_SECTION)
        hint = f"; did you mean '{near}' ({KEY_SECTION[near]} section)?" if near else ""
        out.append(Problem(key, f"not checked: install the training stack to check {key} ({reason}){hint}"))
    return out


def config_warnings(cfg: TrainConfig) -> list[Problem]:
    """The config works, but not as it reads: keys that could not be checked here, keys that do
    nothing for GLM-OCR, packing dropping long samples. Shown by `config validate` and `train`."""
    return unchecked_warnings(cfg) + rule_problems(cfg, "warning")


@dataclass
class FileReport:
    path: Path
    config: TrainConfig | None = None
    error: ConfigError | None = None
    warnings: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as `config validate --json` prints it: each problem with its key path."""
        problems = self.error.problems if self.error is not None else []
        return {"file": str(self.path), "valid": self.error is None,
                "error": None if self.error is None or problems else self.error.message,
                "errors": [{"key": p.path, "message": p.message} for p in problems],
                "warnings": [{"key": p.path, "message": p.message} for p in self.warnings]}


def validate_files(paths: Iterable[Path], host: Host | None = None) -> list[FileReport]:
    host = host or Host.detect()
    reports = []
    for path in paths:
        report = FileReport(path)
        try:
            report.config = load_config(path)
        except ConfigError as exc:
            report.error = exc
        else:
            report.warnings = config_warnings(report.config) + machine_problems(report.config, host)
        reports.append(report)
    return reports

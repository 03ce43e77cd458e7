"""What one planning step changes in a run, and why: config keys, environment, reasons, the files
the run removes first, and what the step was asked for and cannot do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.runtime.errors import GlmocrLfError


@dataclass
class Changes:
    values: dict[str, Any] = field(default_factory=dict)  # flat LLaMA-Factory keys to set
    env: dict[str, str] = field(default_factory=dict)  # for the child's environment
    reasons: list[str] = field(default_factory=list)  # one line per change, for the user
    removals: list[Path] = field(default_factory=list)  # removed before the launch (--fresh)
    problems: list[GlmocrLfError] = field(default_factory=list)  # reported with every other problem

    def add(self, other: Changes) -> None:
        self.values.update(other.values)
        self.env.update(other.env)
        self.reasons.extend(other.reasons)
        self.removals.extend(other.removals)
        self.problems.extend(other.problems)

"""What one planning step changes in a run, and why: config keys, environment, reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Changes:
    values: dict[str, Any] = field(default_factory=dict)  # flat LLaMA-Factory keys to set
    env: dict[str, str] = field(default_factory=dict)  # for the child's environment
    reasons: list[str] = field(default_factory=list)  # one line per change, for the user

    def add(self, other: Changes) -> None:
        self.values.update(other.values)
        self.env.update(other.env)
        self.reasons.extend(other.reasons)

"""One error hierarchy: every user mistake is a GlmocrLfError, rendered by the CLI without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known name `word` most likely misspells (for "did you mean ...?"), or None."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


class GlmocrLfError(Exception):
    """A problem the user can fix. The CLI prints it in red on stderr and exits with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One located problem: `path` is a dotted key path (`train.learning_rate`) or a sample locator."""

    path: str
    message: str

    def render(self) -> str:
        return f"  {self.path}: {self.message}" if self.path else f"  {self.message}"


class ConfigError(GlmocrLfError):
    """A config file that cannot be used; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [p.render() for p in self.problems]
        super().__init__(f"{source}\n" + "\n".join(lines))


class Refused(GlmocrLfError):
    """Every problem found before a launch, each rendered as its own `Error:` (with its hint).
    Config errors about the same source are merged into one."""

    def __init__(self, errors: Sequence[GlmocrLfError]) -> None:
        merged: list[GlmocrLfError] = []
        for err in errors:
            at = next((i for i, m in enumerate(merged) if isinstance(m, ConfigError)
                       and isinstance(err, ConfigError) and m.source == err.source), None)
            if at is None:
                merged.append(err)
            else:
                first = merged[at]
                assert isinstance(first, ConfigError) and isinstance(err, ConfigError)
                merged[at] = ConfigError(first.source, [*first.problems, *err.problems])
        self.errors = merged
        super().__init__("\n".join(e.message for e in merged))


class DataError(GlmocrLfError):
    """A dataset that cannot be used (unreadable file, bad JSON, invalid samples)."""


class LaunchError(GlmocrLfError):
    """Something that stops a launch before any process starts."""


class NothingToDo(Exception):
    """What was asked is already done (`train --resume` of a finished run): said, nothing changed, exit 0."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ChildFailedError(GlmocrLfError):
    """A child process (llamafactory-cli) failed; its exit code becomes ours. `output_tail` holds
    its last lines (shown above the error) and `log` the file with all of them."""

    def __init__(self, message: str, exit_code: int, *, output_tail: Sequence[str] = (),
                 log: object | None = None) -> None:
        super().__init__(message, hint=f"full output: {log}" if log is not None else None)
        self.exit_code = exit_code
        self.output_tail = list(output_tail)


EVAL_EXTRA_HINT = "install the eval extra: pip install 'glmocr-lf[eval]' (`make install` has it)"


class MissingDependencyError(GlmocrLfError):
    """A heavy dependency (torch, transformers, llamafactory) is needed but not installed."""

    def __init__(self, package: str, purpose: str, hint: str | None = None) -> None:
        super().__init__(
            f"{package} is required to {purpose} but is not installed",
            hint=hint or "install the training stack: `make install`, or see README § Install",
        )

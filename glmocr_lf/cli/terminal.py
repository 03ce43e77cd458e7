"""The one console: talk, progress and warnings go to stderr; stdout is for data (YAML, JSON, plans)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import click
from rich.console import Console

# file resolves to sys.stderr at each write (tests swap it); soft_wrap keeps lines exact.
console = Console(stderr=True, soft_wrap=True, highlight=False)


def _print(text: str, style: str | None = None) -> None:
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def info(text: str) -> None:
    _print(text)


def note(text: str) -> None:
    _print(text, "dim")


def success(text: str) -> None:
    _print(text, "green")


def warning(text: str) -> None:
    _print(f"Warning: {text}", "yellow")


def error(text: str) -> None:
    _print(f"Error: {text}", "red")


def out(text: str) -> None:
    """Data on stdout, exactly as given."""
    click.echo(text, nl=not text.endswith("\n"))


def is_interactive() -> bool:
    return console.is_terminal and sys.stderr.isatty()


# Without a terminal, a progress line every this many items (and at the last one).
PLAIN_PROGRESS_EVERY = 10


@contextlib.contextmanager
def counter(label: str, unit: str, *, every: int = PLAIN_PROGRESS_EVERY,
            transient: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Progress as `update(done, total)`: a bar on a terminal; otherwise a plain line
    `label 10/50 unit (12.3 s)` every `every` items and at the end, so a log shows the run moving."""
    if not is_interactive():
        started, last = time.monotonic(), [0]

        def plain(done: int, total: int) -> None:
            if done == total or done - last[0] >= every:
                last[0] = done
                info(f"{label} {done}/{total} {unit} ({time.monotonic() - started:.1f} s)")

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress(label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=transient)
    with progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)

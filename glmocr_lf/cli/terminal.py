"""The one console: talk, progress and warnings go to stderr; stdout is for data (YAML, JSON, plans)."""

from __future__ import annotations

import sys

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

"""Options more than one command group takes: one definition, so their help and types never drift."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_options(func: F) -> F:
    """`--data-dir DIR` or `--lf-dir CHECKOUT` (its data/): where dataset_info.json lives
    (data.registry.resolve_data_dir turns the pair into one folder)."""
    func = click.option("--lf-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="An existing LLaMA-Factory checkout: use its data/ (the vendor guide's layout).")(func)
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="Folder holding dataset_info.json [default: ./data].")(func)

"""`glmocr-lf config`: create, validate and describe training configs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from glmocr_lf.cli import terminal
from glmocr_lf.runtime.constants import METHODS, Method


@click.group("config", short_help="Create, validate and describe training configs.")
def config_group() -> None:
    """Create and check LLaMA-Factory training configs for GLM-OCR."""


@config_group.command("new")
@click.option("--method", type=click.Choice(METHODS), required=True, help="Preset to start from.")
@click.option("--model", help="HF id, ModelScope id or local directory [default: zai-org/GLM-OCR].")
@click.option("--dataset", metavar="NAME", help="Registered dataset name(s), comma-separated [default: cosyn_chemical].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a key (repeatable).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def config_new(method: Method, model: str | None, dataset: str | None, output: Path | None,
               sets: tuple[str, ...], force: bool) -> None:
    """Write a commented config from the vendor's LoRA or full recipe."""
    from glmocr_lf.config import parse_overrides, preset, render_config
    from glmocr_lf.runtime.fsutil import atomic_write_text

    cfg = preset(method, model=model, dataset=dataset, overrides=parse_overrides(sets))
    text, notes = render_config(cfg)
    for line in notes:
        terminal.note(line)
    if output is None:
        terminal.out(text)
        return
    atomic_write_text(output, text, overwrite=force)
    terminal.success(f"Wrote {output}")


@config_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report on stdout.")
def config_validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check configs; exit 0 when every file is valid, 1 otherwise."""
    from glmocr_lf.config.check import validate_files

    report = validate_files(files)
    if as_json:
        terminal.out(json.dumps([item.to_dict() for item in report], indent=2, ensure_ascii=False) + "\n")
        if any(item.error is not None for item in report):
            raise click.exceptions.Exit(1)
        return
    for item in report:
        if item.error is not None:
            terminal.error(item.error.message)
        else:
            terminal.success(f"OK: {item.path}")
        for warning in item.warnings:
            terminal.warning(f"{item.path}: {warning.path}: {warning.message}")
    if any(item.error is not None for item in report):
        raise click.exceptions.Exit(1)


@config_group.command("get", short_help="Print one key's value as FILE sets it.")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("key")
def config_get(file: Path, key: str) -> None:
    """Print KEY's value as FILE sets it, e.g. for a Makefile: `glmocr-lf config get
    configs/lora.yaml model_name_or_path`. Strings print as written, other values as JSON; an
    unset key prints nothing; a key neither glmocr-lf nor LLaMA-Factory knows is an error."""
    from glmocr_lf.config.load import config_value

    value = config_value(file, key)
    if value is not None:
        terminal.out(value + "\n")


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of a config file (for editors) on stdout."""
    from glmocr_lf.config.schema import flat_schema

    terminal.out(json.dumps(flat_schema(), indent=2) + "\n")

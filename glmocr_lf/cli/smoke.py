"""`glmocr-lf smoke-model` and `glmocr-lf smoke`: a tiny GLM-OCR, and the whole pipeline on the CPU."""

from __future__ import annotations

from pathlib import Path

import click

from glmocr_lf.cli import terminal


@click.command("smoke-model", short_help="Build a tiny random GLM-OCR.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for the weights.")
@click.option("--with-mtp", is_flag=True, help="Also write a multi-token-prediction layer, as the real checkpoint has.")
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
def smoke_model(directory: Path, seed: int, with_mtp: bool, force: bool) -> None:
    """Build a tiny randomly initialised GLM-OCR (same classes and files as zai-org/GLM-OCR) in DIRECTORY."""
    from glmocr_lf.runtime.fsutil import require_empty_dir
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    require_empty_dir(directory, force=force)
    path = build_tiny_glm_ocr(directory, seed=seed, with_mtp=with_mtp)
    terminal.success(f"Tiny GLM-OCR written to {path}")


@click.command("smoke", short_help="Whole pipeline on the CPU with a tiny model.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--steps", type=int, default=4, show_default=True, help="LoRA optimizer steps.")
@click.option("--force", is_flag=True, help="Reuse a non-empty DIRECTORY (its smoke outputs are replaced).")
@click.option("-v", "--verbose", is_flag=True, help="Stream llamafactory-cli's own output.")
def smoke(directory: Path | None, steps: int, force: bool, verbose: bool) -> None:
    """Run the whole pipeline on the CPU with a tiny model: build it, register the bundled sample,
    LoRA-train a few steps, export, reload and generate one answer. DIRECTORY defaults to a temp dir."""
    from glmocr_lf.smoke.pipeline import run_smoke

    result = run_smoke(directory, steps=steps, force=force, on_stage=terminal.info,
                       on_line=terminal.note if verbose else (lambda _line: None))
    terminal.success(f"Smoke run passed in {result.seconds:.0f} s: {result.directory}")
    terminal.info(f"  generated: {result.answer!r}")

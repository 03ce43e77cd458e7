"""`glmocr-lf doctor`: check the training stack, the GPUs and (optionally) a model."""

from __future__ import annotations

import json

import click

from glmocr_lf.cli import terminal

_STYLE = {"ok": "green", "warn": "yellow", "error": "red"}


@click.command("doctor", short_help="Check versions, GPUs and a model directory.")
@click.option("--model", metavar="MODEL",
              help="Also check a model: a local directory (config and processor are loaded) or a hub id "
                   "(checked only when it is in the Hugging Face cache).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report on stdout.")
def doctor(model: str | None, as_json: bool) -> None:
    """Check that this machine can fine-tune GLM-OCR; exit 0 when nothing is an error, 1 otherwise.

    Every finding that is not ok says how to fix it.
    """
    from glmocr_lf.project.doctor import run_doctor

    report = run_doctor(model)
    if as_json:
        terminal.out(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        for finding in report.findings:
            terminal.console.print(f"{finding.status:<5} {finding.check}: {finding.detail}",
                                   style=_STYLE[finding.status], markup=False, highlight=False)
            if finding.fix and finding.status != "ok":
                terminal.info(f"      fix: {finding.fix}")
    errors, warnings = len(report.errors), len(report.warnings)
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if errors:
        terminal.error(summary)
        raise click.exceptions.Exit(1)
    terminal.success(f"ready: {summary}")

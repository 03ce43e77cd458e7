"""`glmocr-lf export`: merge and check a trained model so it is ready to serve."""

from __future__ import annotations

from pathlib import Path

import click

from glmocr_lf.cli import terminal
from glmocr_lf.runtime.constants import HUBS, Hub


@click.command("export", short_help="Merge and check a trained model for serving.")
@click.option("--adapter", type=click.Path(file_okay=False, path_type=Path), help="LoRA run dir (output_dir or a checkpoint-N).")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Full fine-tune output dir (no adapter).")
@click.option("--base", help="Base model [default: the one the run trained from].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where the merged model goes [default: RUN/merged].")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@click.option("--hub", type=click.Choice(HUBS), default="hf", show_default=True,
              help="Where model ids resolve (modelscope: ZhipuAI/GLM-OCR).")
@click.option("--dry-run", is_flag=True, help="Print the export command and YAML; run nothing.")
@click.option("-v", "--verbose", is_flag=True,
              help="Stream llamafactory-cli's own output (it always goes to OUT/glmocr_lf_export.log).")
def export(adapter: Path | None, model: Path | None, base: str | None, out: Path | None, force: bool,
           hub: Hub, dry_run: bool, verbose: bool) -> None:
    """Merge a LoRA adapter into its base (or re-save a full fine-tune) with llamafactory-cli export,
    then check the result: weights, tokenizer, processor, chat template; record the training
    resolution in the processor config; carry the base's MTP layer for vLLM."""
    from glmocr_lf.export.merge import ExportRequest, execute_export, plan_export
    from glmocr_lf.runtime.constants import EXPORT_LOG

    if (adapter is None) == (model is None):
        raise click.UsageError("give exactly one of --adapter (a LoRA run) or --model (a full fine-tune)")
    plan = plan_export(ExportRequest(adapter=adapter, model=model, base=base, out=out, force=force, hub=hub,
                                      dry_run=dry_run))
    for note in plan.notes:
        terminal.note(note)
    if dry_run:
        terminal.out(plan.shell_line() + "\n")
        terminal.out(plan.yaml_text)
        return
    terminal.info(f"$ {plan.shell_line()}")
    result = execute_export(plan, on_line=terminal.note if verbose else (lambda _line: None))
    terminal.success(f"Exported {result.out}")
    terminal.info(f"  base:             {result.base}")
    terminal.info(f"  adapter:          {result.adapter or '-'}")
    terminal.info(f"  image_max_pixels: {result.image_max_pixels} (recorded in the processor config)")
    terminal.info(f"  MTP tensors:      {result.mtp_tensors or 'none in the base'}")
    terminal.info(f"  full log:         {result.out / EXPORT_LOG}")

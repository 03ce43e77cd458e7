"""`glmocr-lf eval`: generate answers on a dataset, score them with OCR metrics, compare two runs."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from glmocr_lf.cli import terminal
from glmocr_lf.cli.options import data_dir_options
from glmocr_lf.runtime.constants import PROTOCOLS, Protocol


@click.group("eval", short_help="OCR metrics: run, score and compare models.")
def eval_group() -> None:
    """Score OCR quality: base model vs fine-tuned, with the metrics GLM-OCR's authors use."""


def _or_pages(run: Callable[..., None]) -> Callable[..., None]:
    """`eval run --pages GT.json --images DIR` goes to the page runner; a plain `eval run` needs --dataset."""
    @functools.wraps(run)
    def dispatch(pages_gt: Path | None, page_images: Path | None, whole_page: bool, max_pages: int | None,
                 **values: Any) -> None:
        if pages_gt is None and page_images is None and not whole_page and max_pages is None:
            if values["dataset"] is None:
                raise click.UsageError("pass --dataset, or --pages GT.json --images DIR")
            return run(**values)
        if values["dataset"] is not None or pages_gt is None:
            raise click.UsageError("pass --dataset, or --pages GT.json --images DIR (--images, --whole-page "
                                   "and --max-pages go with --pages)")
        if values["resume"] and values["force"]:
            raise click.UsageError("--resume and --force exclude each other")
        if values["max_samples"] is not None:
            raise click.UsageError("--max-samples counts dataset samples; with --pages use --max-pages")
        if values["settings_from"] is not None:
            raise click.UsageError("--settings-from goes with --dataset")
        if values["data_dir"] is not None or values["lf_dir"] is not None:
            raise click.UsageError("--data-dir and --lf-dir name where --dataset is registered; --pages reads "
                                   "its ground truth from its own file")
        keys = ("model", "adapter", "max_new_tokens", "repetition_penalty", "image_max_pixels", "image_min_pixels",
                "batch_size", "device", "force", "resume", "out_dir", "verbose")
        _run_pages({**{key: values[key] for key in keys if values[key] is not None or key != "image_min_pixels"},
                    "pages": pages_gt, "images": page_images, "whole_page": whole_page, "max_pages": max_pages})
        return None

    return dispatch


@eval_group.command("run", short_help="Generate answers and score them.")
@click.option("--model", required=True, help="Model directory or HF id (a base or an exported model).")
@click.option("--adapter", type=click.Path(file_okay=False, path_type=Path),
              help="LoRA adapter directory (a training output) applied on top of --model.")
@click.option("--dataset",
              help="Registered dataset name (in --data-dir/dataset_info.json) or a ShareGPT file.")
@click.option("--pages", "pages_gt", type=click.Path(dir_okay=False, path_type=Path),
              help="Instead of --dataset: an OmniDocBench ground-truth JSON; each page is read region by "
                   "region (ground-truth layout) into page Markdown and scored as OmniDocBench does.")
@click.option("--images", "page_images", type=click.Path(file_okay=False, path_type=Path),
              help="With --pages: the folder of its page images.")
@click.option("--whole-page", is_flag=True, help="With --pages: one call per page image instead, for contrast.")
@click.option("--max-pages", type=click.IntRange(min=1), help="With --pages: the first N pages only.")
@data_dir_options
@click.option("--settings-from", type=click.Path(file_okay=False, path_type=Path),
              help="Score with the image limits of this model's export or training record (the fine-tune "
                   "a base is compared with).")
@click.option("--max-samples", type=click.IntRange(min=1), help="Evaluate the first N samples only.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Longest answer generated per sample, in tokens.")
@click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="1.0 = plain greedy; GLM-OCR's own SDK uses 1.1.")
@click.option("--image-max-pixels", type=click.IntRange(min=1),
              help="Resize images as training did [default: from the export/run record, else 589824].")
@click.option("--image-min-pixels", type=click.IntRange(min=1),
              help="Upscale smaller images as training did [default: from the export/run record, else 1024].")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples generated together (left padding; the same answers, faster on a GPU).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory [default: evals/<model>[-<adapter>], with --pages "
                   "evals/<model>[-<adapter>]-<GT name>-pages].")
@click.option("--force", is_flag=True, help="Regenerate even what the same model, settings and data made.")
@click.option("--resume", is_flag=True,
              help="Continue the predictions in --out, and refuse if they were made differently.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show transformers' own output: model loading messages, warnings, its progress bars.")
@_or_pages
def eval_run(model: str, adapter: Path | None, dataset: str, data_dir: Path | None, lf_dir: Path | None,
             settings_from: Path | None, max_samples: int | None, max_new_tokens: int, repetition_penalty: float,
             image_max_pixels: int | None, image_min_pixels: int | None, batch_size: int, device: str,
             out_dir: Path | None, force: bool, resume: bool, verbose: bool) -> None:
    """Generate answers greedily for each sample, write predictions.jsonl and scores.json, print
    the scores. Predictions made by the same model (its files' sha256), settings and dataset content
    are reused; an interrupted run is continued; anything changed is generated again. With --pages
    GT.json --images DIR: page Markdown from the ground-truth layout, scored page by page as
    OmniDocBench does."""
    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    from glmocr_lf.data.registry import resolve_data_dir
    from glmocr_lf.evaluation.run import RunHooks, RunOptions, default_out_dir, run_evaluation
    from glmocr_lf.evaluation.score import render_scores

    options = RunOptions(
        model=model, adapter=adapter, settings_from=settings_from, dataset=dataset,
        data_dir=resolve_data_dir(data_dir, lf_dir),
        max_samples=max_samples, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
        image_max_pixels=image_max_pixels, image_min_pixels=image_min_pixels,
        batch_size=batch_size, device=device,
        out_dir=out_dir or default_out_dir(model, adapter), force=force, resume=resume, verbose=verbose,
    )
    with terminal.counter("generating", "samples") as progress, _kept_when_interrupted(options.out_dir, "predictions"):
        result = run_evaluation(options, RunHooks(on_start=_show_plan, on_progress=progress))
    terminal.out(render_scores(result.scores))
    verb = "Reused" if result.reused else "Wrote"
    terminal.success(f"{verb} {result.predictions_path} and {result.scores_path}")


@contextlib.contextmanager
def _kept_when_interrupted(out_dir: Path, what: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP
        terminal.note(f"{out_dir}: the finished {what} are kept; the same command continues after them")
        raise


def _show_plan(lines: list[str]) -> None:
    for line in lines:
        terminal.note(line)


def _run_pages(values: dict[str, Any]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from glmocr_lf.evaluation.omnidocbench.pagescore import render_page_scores
    from glmocr_lf.evaluation.pagerun import (
        LAYOUTS,
        PageRunOptions,
        default_page_out_dir,
        run_pages,
    )

    if values["images"] is None:
        raise click.UsageError("--pages needs --images, the folder of its page images")
    values["out_dir"] = values["out_dir"] or default_page_out_dir(values["model"], values["adapter"], values["pages"],
                                                                  values["whole_page"])
    options = PageRunOptions(**values)
    progress = Progress("recognising", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=terminal.console, disable=not terminal.is_interactive())
    with progress, _kept_when_interrupted(options.out_dir, "answers"):
        bar = progress.add_task("pages", total=None)
        folder, scores, reused = run_pages(options, on_start=_show_plan, on_progress=lambda done, total: progress.update(
            bar, completed=done, total=total))
    terminal.out(f"layout: {LAYOUTS[options.whole_page]}\n" + render_page_scores(scores))
    terminal.success(f"{'Reused' if reused else 'Wrote'} {folder} and {options.out_dir / 'page_scores.json'}")


@eval_group.command("score", short_help="Score a predictions file.")
@click.argument("predictions", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="ours", show_default=True,
              help="omnidocbench: OmniDocBench's normalisations and totals (edit, edit_total, teds), "
                   "comparable with its published element scores.")
@click.option("--pages", "pages_gt", type=click.Path(dir_okay=False, path_type=Path),
              help="With --protocol omnidocbench: an OmniDocBench ground-truth JSON; PREDICTIONS is then a "
                   "folder of one Markdown file per page, scored page by page as OmniDocBench's end-to-end "
                   "evaluation does.")
@click.option("--workers", type=click.IntRange(min=1), help="Processes scoring samples [default: every core].")
def eval_score(predictions: Path, as_json: bool, protocol: Protocol, pages_gt: Path | None, workers: int | None) -> None:
    """Score a predictions file (ours, or LLaMA-Factory's generated_predictions.jsonl) per task and
    overall; or, with --pages GT.json, a folder of page Markdown files as OmniDocBench does."""
    if pages_gt is not None:
        if protocol != "omnidocbench":
            raise click.UsageError("--pages scores pages by OmniDocBench's rules: add --protocol omnidocbench")
        _score_pages(pages_gt, predictions, as_json)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from glmocr_lf.evaluation.score import render_scores, score_file

    bar = Progress("scoring", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=terminal.console, disable=not terminal.is_interactive(), transient=True)
    with bar:
        task = bar.add_task("score", total=None)
        scores = score_file(predictions, protocol=protocol, workers=workers,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        terminal.out(json.dumps(scores.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        terminal.out(render_scores(scores))


def _score_pages(ground_truth: Path, folder: Path, as_json: bool) -> None:
    from glmocr_lf.evaluation.omnidocbench.pagescore import render_page_scores, score_pages

    scores = score_pages(ground_truth, folder)
    for page in scores.missing:
        terminal.warning(f"{folder}: no Markdown file for {page}; the page is left out, as OmniDocBench does")
    if as_json:
        terminal.out(json.dumps(scores.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        terminal.out(render_page_scores(scores))


def _compare_pages(baseline: Path, candidate: Path, out_file: Path | None, as_json: bool) -> bool:
    from glmocr_lf.evaluation.omnidocbench.pagescore import compare_page_scores, read_page_scores
    from glmocr_lf.runtime.fsutil import atomic_write_text

    a, b = read_page_scores(baseline), read_page_scores(candidate)
    if a is None and b is None:
        return False
    if a is None or b is None:
        raise click.UsageError("compare two page_scores.json files, or two predictions files")
    report = (json.dumps({"a": a, "b": b}, indent=2, ensure_ascii=False) + "\n" if as_json
              else compare_page_scores(a, b, str(baseline), str(candidate)))
    if out_file is None:
        terminal.out(report)
    else:
        atomic_write_text(out_file, report)
        terminal.success(f"Wrote {out_file}")
    return True


@eval_group.command("compare", short_help="Compare two scored runs per task.")
@click.argument("baseline", type=click.Path(path_type=Path))  # a folder or a missing file: one Error, exit 1
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here instead of stdout (markdown: the HTML report goes beside it).")
@click.option("--json", "as_json", is_flag=True, help="JSON report instead of markdown.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report here [default with a markdown --out: beside it, as .html].")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the most regressed samples to list.")
@click.option("--allow-different-settings", is_flag=True,
              help="Compare runs made with different settings anyway; every report then starts with them.")
def eval_compare(baseline: Path, candidate: Path, out_file: Path | None, as_json: bool, html_file: Path | None,
                 top: int, allow_different_settings: bool) -> None:
    """Compare BASELINE (A) with CANDIDATE (B): per-task deltas, a verdict, top regressions. Runs
    whose records (eval_run.json) differ in any setting that changes scores are refused. Two
    page_scores.json files (`eval run --pages`) are compared category by category."""
    from glmocr_lf.evaluation.compare import compare_files, render_markdown
    from glmocr_lf.runtime.fsutil import atomic_write_text, check_file_target
    from glmocr_lf.runtime.records import EVAL_RECORD

    if _compare_pages(baseline, candidate, out_file, as_json):
        return
    if html_file is None and out_file is not None and not as_json:
        html_file = out_file.with_suffix(".html")
    for target in (out_file, html_file):
        if target is not None:
            check_file_target(target)  # before any work: a place that cannot be written is the first error
    comparison, check = compare_files(baseline, candidate, top=top,
                                      allow_different_settings=allow_different_settings)
    for path in check.unchecked:
        terminal.warning(f"{path}: no {EVAL_RECORD} beside it: its settings are not checked")
    for line in comparison.settings_differences:
        terminal.warning(f"different settings, compared anyway: {line}")
    if as_json:
        report = json.dumps(comparison.to_json(), indent=2, ensure_ascii=False) + "\n"
    else:
        report = render_markdown(comparison)
    html = None
    if html_file is not None:  # rendered before anything is written: the reports are one result
        from glmocr_lf.evaluation.htmlreport import render_html

        html = render_html(comparison)
    written = []
    if out_file is None:
        terminal.out(report)
    else:
        atomic_write_text(out_file, report)
        written.append(str(out_file))
    if html_file is not None and html is not None:
        atomic_write_text(html_file, html)
        written.append(str(html_file))
    if written:
        terminal.info(comparison.verdict.line)
        terminal.success("Wrote " + " and ".join(written))

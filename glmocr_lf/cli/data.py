"""`glmocr-lf data`: validate, register, list, remove, describe and convert datasets."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from glmocr_lf.cli import terminal
from glmocr_lf.cli.options import data_dir_options
from glmocr_lf.runtime.constants import LINK_MODES, TASKS, LinkMode

if TYPE_CHECKING:
    from glmocr_lf.data.report import CheckOptions, ValidationReport
    from glmocr_lf.data.validate import Progress

F = TypeVar("F", bound=Callable[..., Any])

PROBLEM_FORMAT = """\b
Problems are printed one a line on stderr:
  FILE: sample N: FIELD: message           (JSON list)
  FILE:LINE: sample N: FIELD: message      (JSON Lines)
N counts samples from 0 (as `jq '.[N]'`), LINE counts lines from 1; warnings read
`FIELD: warning: message`."""


def _budget_options(func: F) -> F:
    """The options that shape a CheckOptions, handed to the command as one `options` argument."""
    options = [
        click.option("--media-dir", type=click.Path(path_type=Path), metavar="DIR",
                     help="Base of relative image paths [default: the dataset file's folder]."),
        click.option("--cutoff-len", type=click.IntRange(min=1),
                     help="Check the token budget against this cutoff_len."),
        click.option("--image-max-pixels", type=click.IntRange(min=1),
                     help="LLaMA-Factory's image_max_pixels [default: 589824 = 768x768]."),
        click.option("--image-min-pixels", type=click.IntRange(min=1),
                     help="LLaMA-Factory's image_min_pixels [default: 1024 = 32x32]."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="Read cutoff_len and image_max/min_pixels from a training config."),
        click.option("--model", type=click.Path(file_okay=False, path_type=Path),
                     help="Model folder whose tokenizer counts text tokens exactly (slower)."),
        click.option("--allow-outside", is_flag=True,
                     help="Accept absolute image paths and paths outside the media dir."),
    ]
    names = ("media_dir", "cutoff_len", "image_max_pixels", "image_min_pixels", "config_file", "model",
             "allow_outside")

    @functools.wraps(func)
    def with_options(*args: Any, **kwargs: Any) -> Any:
        from glmocr_lf.data.report import check_options

        given = {n: kwargs.pop(n) for n in names}
        config_file = given.pop("config_file")
        if config_file is not None:
            from glmocr_lf.config.load import load_config

            given["training"] = load_config(config_file)
        return func(*args, options=check_options(**given), **kwargs)

    for option in reversed(options):
        with_options = option(with_options)
    return with_options  # type: ignore[return-value]


@contextmanager
def _progress(label: str) -> Iterator[Progress | None]:
    """A Rich bar on an interactive stderr, nothing otherwise (logs and tests stay clean)."""
    if not terminal.is_interactive():
        yield None
        return
    from rich.progress import Progress as Bar

    with Bar(console=terminal.console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)  # 0: not known yet

        yield update


def render_problems(report: ValidationReport) -> None:
    for item in report.problems:
        if item.severity == "error":
            terminal.console.print(item.render(), style="red", markup=False, highlight=False)
        else:
            terminal.console.print(item.render(), style="yellow", markup=False, highlight=False)


def _summary(report: ValidationReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    return (f"{report.file}: {report.samples} samples, {report.ok} OK, "
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")


@click.group("data", short_help="Validate, register, inspect and convert datasets.")
def data_group() -> None:
    """Validate, register and inspect GLM-OCR datasets (ShareGPT JSON or JSONL), and convert to
    them: a folder of images with same-stem .txt/.md/.html/.tex targets, JSONL/CSV, Parquet, Arrow,
    save_to_disk folders, hub datasets, and page layouts (COCO, OmniDocBench)."""


@data_group.command("validate", epilog=PROBLEM_FORMAT, short_help="Check every sample of a file or dataset.")
@click.argument("source", metavar="FILE|NAME")
@_budget_options
@data_dir_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report on stdout.")
def data_validate(source: str, options: CheckOptions, data_dir: Path | None, lf_dir: Path | None,
                  as_json: bool) -> None:
    """Check every sample of FILE (or of the dataset registered as NAME, read the way training reads
    it); exit 0 when there are no errors, 1 otherwise."""
    from glmocr_lf.data.registry import resolve_data_dir
    from glmocr_lf.data.validate import resolve_source, validate_file

    file, options = resolve_source(source, resolve_data_dir(data_dir, lf_dir), options)
    with _progress("checking images") as progress:
        report = validate_file(file, options, progress=progress)
    if as_json:
        terminal.out(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        render_problems(report)
    if report.errors:
        terminal.error(_summary(report))
        raise click.exceptions.Exit(1)
    terminal.success(_summary(report))


@data_group.command("register", epilog=PROBLEM_FORMAT, short_help="Validate, stage and register a dataset.")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path))
@data_dir_options
@click.option("--link", type=click.Choice(LINK_MODES), default="symlink", show_default=True,
              help="How images are staged into the data dir.")
@click.option("--force", is_flag=True, help="Replace a dataset registered under NAME with different content.")
@_budget_options
def data_register(name: str, file: Path, data_dir: Path | None, lf_dir: Path | None, link: LinkMode, force: bool,
                  options: CheckOptions) -> None:
    """Validate FILE, stage it and its images into the data dir as NAME, add it to dataset_info.json.

    Nothing is written when FILE has errors. Image paths in the staged copy become NAME/vDIGEST/<path>,
    so they resolve from the data dir (LLaMA-Factory's default media_dir). A FILE already in the
    data dir whose images resolve from it is registered as it is; FILE is never modified.
    """
    from glmocr_lf.data.registry import InvalidDatasetError, register_dataset, resolve_data_dir

    target = resolve_data_dir(data_dir, lf_dir)
    try:
        with _progress("checking images") as progress:
            result = register_dataset(name, file, target, options=options, link=link,
                                      force=force, progress=progress)
    except InvalidDatasetError as err:
        render_problems(err.report)
        raise
    for item in result.report.warnings:
        terminal.console.print(item.render(), style="yellow", markup=False, highlight=False)
    from glmocr_lf.runtime.launch import whitespace_note

    spaced = whitespace_note(result.data_dir)  # a launch concern: data/ knows nothing of torchrun
    if spaced:
        terminal.warning(spaced)
    info = result.data_dir / "dataset_info.json"
    if result.status == "unchanged":
        terminal.info(f"{name}: already registered in {info} with the same content; nothing to do")
        return
    verb = "Replaced" if result.status == "replaced" else "Registered"
    where = " in place" if result.in_place else ""
    terminal.success(f"{verb} {name}{where}: {result.samples} samples, {result.images} images -> {info}")
    if result.in_place:
        terminal.note(f"{result.dataset_file} is used as it is (its image paths resolve from {result.data_dir})")
    terminal.note(f"train with: dataset: {name}, dataset_dir: {result.data_dir.resolve()}")


@data_group.command("list", short_help="List the registered datasets.")
@data_dir_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_list(data_dir: Path | None, lf_dir: Path | None, as_json: bool) -> None:
    """List the datasets in dataset_info.json (name, samples, file, images) on stdout."""
    from glmocr_lf.data.registry import list_datasets, resolve_data_dir

    rows = list_datasets(resolve_data_dir(data_dir, lf_dir))
    for listing in rows:
        if listing.problem:
            terminal.warning(f"{listing.name}: {listing.problem}")
    if as_json:
        terminal.out(json.dumps([row.__dict__ for row in rows], indent=2, ensure_ascii=False) + "\n")
        return
    if not rows:
        terminal.note("no datasets registered")
        return
    table = [("NAME", "SAMPLES", "FILE", "IMAGES")] + [
        (r.name, "-" if r.samples is None else str(r.samples), r.file, "-" if r.images is None else str(r.images))
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        terminal.out("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3] + "\n")


@data_group.command("remove", short_help="Unregister a dataset.")
@click.argument("name")
@data_dir_options
@click.option("--purge", is_flag=True, help="Also delete the staged NAME.json and NAME/ image links.")
def data_remove(name: str, data_dir: Path | None, lf_dir: Path | None, purge: bool) -> None:
    """Remove NAME from dataset_info.json (its staged files stay unless --purge)."""
    from glmocr_lf.data.registry import remove_dataset, resolve_data_dir

    result = remove_dataset(name, resolve_data_dir(data_dir, lf_dir), purge=purge)
    for path in result.purged:
        terminal.note(f"deleted {path}")
    for path in result.kept:
        terminal.warning(f"kept {path}: not staged by glmocr-lf")
    terminal.success(f"Removed {name}")


@data_group.command("stats", short_help="Tasks, image sizes and token counts.")
@click.argument("source", metavar="NAME|FILE")
@data_dir_options
@_budget_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def data_stats(source: str, data_dir: Path | None, lf_dir: Path | None, options: CheckOptions,
               as_json: bool) -> None:
    """Samples per task prompt, image sizes and downsizing, tokens per sample against cutoff_len
    (default 2048) and how many samples would be cut."""
    from glmocr_lf.data.registry import resolve_data_dir
    from glmocr_lf.data.stats import dataset_stats

    with _progress("checking images") as progress:
        stats = dataset_stats(source, resolve_data_dir(data_dir, lf_dir), options, progress=progress)
    if as_json:
        terminal.out(json.dumps(stats.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    approx = "" if stats.token_count == "exact" else " (estimated; --model counts exactly)"
    lines = [f"file: {stats.file}", f"samples: {stats.samples} ({stats.errors} errors)", "prompts:"]
    lines += [f"  {count:>8}  {prompt!r}" for prompt, count in stats.prompts.items()]
    lines.append(f"images: {stats.images}")
    if stats.width and stats.height:
        lines.append(f"  width  p50 {stats.width.p50}  p95 {stats.width.p95}  max {stats.width.max}")
        lines.append(f"  height p50 {stats.height.p50}  p95 {stats.height.p95}  max {stats.height.max}")
        scale = f", median scale {stats.median_downscale}" if stats.median_downscale else ""
        lines.append(f"  downsized by image_max_pixels={stats.image_max_pixels}: {stats.downsized}{scale}")
    if stats.tokens:
        lines.append(f"tokens per sample{approx}: p50 {stats.tokens.p50}  p95 {stats.tokens.p95}  "
                     f"max {stats.tokens.max}")
    if stats.image_tokens:
        lines.append(f"  image tokens: p50 {stats.image_tokens.p50}  p95 {stats.image_tokens.p95}  "
                     f"max {stats.image_tokens.max}")
    lines.append(f"cutoff_len {stats.cutoff_len}: {stats.image_cut} samples would lose image tokens "
                 f"(training crashes), {stats.answer_cut} would have the answer cut")
    terminal.out("\n".join(lines) + "\n")


@data_group.command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="ShareGPT JSON to write (with --val-ratio also OUTPUT_val.json); extracted images go "
                   "to OUTPUT_images/.")
@click.option("--task", type=click.Choice(TASKS),
              help="Task prompt for rows without one [default: from the target's extension, else text].")
@click.option("--prompt", help="A custom prompt instead of the task prompts.")
@click.option("--val-ratio", type=float, default=0.0, show_default=True,
              help="Hold out this fraction of images in a validation file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/val split.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--image-col", default="image", show_default=True,
              help="Parquet/Arrow/hub: column of image bytes, {bytes, path} structs or paths.")
@click.option("--text-col", default="text", show_default=True, help="Parquet/Arrow/hub: column of target texts.")
@click.option("--task-col", help="Parquet/Arrow/hub: column of task names [default: `task` if present].")
@click.option("--split", help="Arrow folder or hub id with several splits: which one [default: train].")
@click.option("--layout", "layout_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Page annotations (COCO or OmniDocBench JSON); SOURCE is the folder of page images. "
                   "Writes one crop per region.")
@click.option("--margin", type=click.IntRange(min=0), default=4, show_default=True,
              help="--layout: pixels added around each box (clamped to the page).")
@click.option("--category-map", "category_map", multiple=True, metavar="CATEGORY=TASK",
              help="--layout: map a category to text, table, formula or skip (repeatable).")
def data_convert(source: Path, output: Path, task: str | None, prompt: str | None, val_ratio: float,
                 seed: int, force: bool, image_col: str, text_col: str, task_col: str | None,
                 split: str | None, layout_file: Path | None, margin: int,
                 category_map: tuple[str, ...]) -> None:
    """Convert SOURCE to GLM-OCR ShareGPT. SOURCE is one of:

    \b
      a folder of images with same-stem .txt/.md/.html/.tex targets
      a JSONL/CSV file with image,text[,task] columns
      a Parquet or Arrow file, a datasets.save_to_disk folder, or a hub
        dataset id in the local cache (image cells: bytes, {bytes, path}, paths)
      with --layout FILE: the folder of the pages FILE annotates
    """
    from glmocr_lf.data.convert import convert
    from glmocr_lf.data.layout import LayoutOptions, parse_category_map
    from glmocr_lf.data.tabular import TabularOptions

    tabular = TabularOptions(image_col=image_col, text_col=text_col, task_col=task_col, split=split)
    layout = (LayoutOptions(file=layout_file, margin=margin, category_map=parse_category_map(category_map))
              if layout_file is not None else None)
    with _progress("converting") as progress:
        result = convert(source, output, task=task, prompt=prompt, val_ratio=val_ratio, seed=seed,
                         force=force, tabular=tabular, layout=layout, progress=progress)
    for line in result.warnings:
        terminal.warning(line)
    if result.counts:
        terminal.info("converted: " + ", ".join(f"{name} {n}" for name, n in result.counts.items()))
    if result.skipped:
        terminal.info("skipped: " + ", ".join(f"{name} {n}" for name, n in result.skipped.items()))
    for prompt, (train_n, held_n) in sorted(result.split.items()):
        terminal.info(f"  {prompt!r}: {train_n} train, {held_n} held out")
    terminal.success(f"Wrote {result.train} ({result.train_samples} samples)")
    if result.val is not None:
        terminal.success(f"Wrote {result.val} ({result.val_samples} samples)")
    if result.removed is not None:
        terminal.info(f"Removed {result.removed}: without --val-ratio its samples are in {result.train}")


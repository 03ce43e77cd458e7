"""`eval run --pages GT.json --images DIR`: page Markdown made with the model, then scored as
OmniDocBench scores pages (`omnidocbench.pagescore`).

Ground-truth layout (the default): each region of the ground truth is cropped (`data convert
--layout`'s reading and cropping), recognised with its task's prompt, and the answers are put
together in reading order as GLM-OCR's SDK writes a page (`pageformat`). The score is therefore
that of the recognition with a perfect layout, not of a layout model plus OCR. `--whole-page`:
one call per page image with the text prompt, for contrast.

The folder is `eval run`'s (`outputs.plan_folder`): the answers are keyed by the model's and
adapter's files, the settings that change answers and the content of the ground truth and page
images; the same key reuses finished answers (no model load) and continues unfinished ones, anything
changed regenerates, saying what. Each answer is appended to regions.jsonl as it is made; md/ is
written as one set (staged, then renamed into place) at the end, and page_run.json last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmocr_lf.data import jsonl
from glmocr_lf.data.layout import crop_box, read_pages
from glmocr_lf.evaluation.outputs import Folder, OutputPlan, RunKey, plan_folder
from glmocr_lf.evaluation.pageformat import GLM_LABELS, Block, page_markdown, task_of
from glmocr_lf.evaluation.run import check_model, default_out_dir, model_fingerprints
from glmocr_lf.evaluation.settings import DECODING, Resolution, resolve_resolution
from glmocr_lf.runtime.constants import (
    IMAGE_PLACEHOLDER,
    LF_DEFAULT_IMAGE_MIN_PIXELS,
    TASK_PROMPTS,
    TEMPLATE,
)
from glmocr_lf.runtime.errors import DataError, GlmocrLfError
from glmocr_lf.runtime.fsutil import (
    atomic_write_text,
    check_writable,
    ensure_dir,
    output_lock,
    remove_path,
)
from glmocr_lf.runtime.modelfiles import Hasher
from glmocr_lf.runtime.process import Interrupted, stop_of, stop_signals_interrupt
from glmocr_lf.runtime.records import (
    PageRunRecord,
    now,
    page_run_record_path,
    read_page_run_record,
    write_page_run_record,
)

if TYPE_CHECKING:
    from glmocr_lf.evaluation.generation import LoadedModel

ANSWERS_FILE = "regions.jsonl"
MARKDOWN_DIR = "md"
SCORES_FILE = "page_scores.json"
LAYOUTS = {False: "ground-truth layout", True: "whole page, one call"}


@dataclass(frozen=True)
class PageRunOptions:
    model: str
    pages: Path
    images: Path
    out_dir: Path
    adapter: Path | None = None
    whole_page: bool = False
    max_pages: int | None = None
    max_new_tokens: int = 2048
    repetition_penalty: float = 1.0
    image_max_pixels: int | None = None
    image_min_pixels: int = LF_DEFAULT_IMAGE_MIN_PIXELS
    batch_size: int = 1
    device: str = "auto"
    margin: int = 4
    force: bool = False
    resume: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Region:
    id: str  # PAGE#INDEX (PAGE#page for a whole page)
    page: str  # the page's image name
    label: str  # GLM-OCR layout label
    task: str
    order: float
    box: tuple[float, float, float, float] | None  # None: the whole page


def default_page_out_dir(model: str, adapter: Path | None, pages: Path, whole_page: bool) -> Path:
    """evals/<model>[-<adapter>]-<ground truth>-pages (or -whole-page): two models never share a folder."""
    folder = default_out_dir(model, adapter)
    return folder.with_name(f"{folder.name}-{Path(pages).stem}" + ("-whole-page" if whole_page else "-pages"))


def plan_regions(options: PageRunOptions) -> list[Region]:
    """Every region to recognise, page by page in the ground truth's order, each page in reading order."""
    pages = read_pages(options.pages)[:options.max_pages]
    regions: list[Region] = []
    for page in pages:
        name = os.path.basename(page.image)
        if options.whole_page:
            regions.append(Region(f"{name}#page", name, "text", "text", 0, None))
            continue
        found = []
        for index, region in enumerate(page.regions):
            task = task_of(region.category)
            if task is None or region.ignore:
                continue
            order = region.fields.get("order")
            found.append(Region(f"{name}#{index}", name, GLM_LABELS.get(region.category, "text"), task,
                                float(order) if isinstance(order, (int, float)) else float("inf"), region.box))
        regions += sorted(found, key=lambda r: r.order)
    return regions


def page_names(options: PageRunOptions) -> list[str]:
    return [os.path.basename(page.image) for page in read_pages(options.pages)[:options.max_pages]]


def page_image(options: PageRunOptions, name: str) -> Path:
    source = options.images / name
    if not source.is_file():
        raise DataError(f"{source}: page image not found (from {options.pages})",
                        hint="--images is the folder holding the ground truth's page_info.image_path files")
    return source


def page_settings(options: PageRunOptions, resolution: Resolution, hasher: Hasher) -> dict[str, Any]:
    """Everything besides the model that changes the answers, the ground truth and the page images
    it names by content (each file hashed once per command)."""
    images = [[name, hasher.sha256(page_image(options, name))] for name in page_names(options)]
    return {"image_max_pixels": resolution.max_pixels, "image_min_pixels": resolution.min_pixels,
            "max_new_tokens": options.max_new_tokens, "repetition_penalty": options.repetition_penalty,
            "decoding": DECODING, "template": TEMPLATE, "layout": LAYOUTS[options.whole_page],
            "margin": None if options.whole_page else options.margin, "max_pages": options.max_pages,
            "pages_sha256": hasher.sha256(options.pages),
            "images_sha256": hashlib.sha256(json.dumps(images).encode()).hexdigest()}


def crop(options: PageRunOptions, region: Region, folder: Path) -> Path:
    """The region's image as a PNG under `folder` (the page itself for a whole-page run)."""
    from PIL import Image

    source = page_image(options, region.page)
    try:
        with Image.open(source) as opened:
            opened.load()
            image = opened.convert("RGB")
    except Exception as err:  # PIL raises many types for unreadable images
        raise DataError(f"{source}: cannot read the page image: {err}") from None
    if region.box is not None:
        box = crop_box(region.box, options.margin, image.width, image.height)
        if box is None:
            raise DataError(f"{options.pages}: {region.id}: the region's box is outside the "
                            f"{image.width}x{image.height} page")
        image = image.crop(box)
    path = folder / (region.id.replace("#", "_").replace(os.sep, "_") + ".png")
    image.save(path)
    return path


def _finished(options: PageRunOptions, regions: list[Region]) -> dict[str, str]:
    path = options.out_dir / ANSWERS_FILE
    if not path.is_file():
        return {}
    done = {str(rec["id"]): str(rec["answer"]) for _, rec in jsonl.read(path, "region answers file")}
    unknown = sorted(set(done) - {r.id for r in regions})
    if unknown:
        raise GlmocrLfError(f"{path} holds regions that are not in {options.pages} (first: {unknown[0]!r})",
                            hint="pass --force to start over")
    return done


@dataclass
class _PageRun:
    """One page evaluation as planned: its regions, settings, identity and what the folder holds."""

    options: PageRunOptions
    regions: list[Region]
    resolution: Resolution
    key: RunKey
    outputs: OutputPlan[str]
    hasher: Hasher  # what this command hashed: each file is read once
    notes: list[str] = field(default_factory=list)  # about the model (its training died)
    record: PageRunRecord = field(default_factory=PageRunRecord)


def plan_page_run(options: PageRunOptions, hasher: Hasher | None = None) -> _PageRun:
    """Every check that can fail before a model loads, as `eval run` makes them; reads files, writes none."""
    hasher = hasher or Hasher()
    check_writable(options.out_dir, "--out directory")
    regions = plan_regions(options)
    notes = check_model(options.model, options.adapter, hasher)  # stale merge, loadable, still training
    resolution = resolve_resolution(options.model, options.adapter, None, options.image_max_pixels,
                                    options.image_min_pixels)
    earlier = read_page_run_record(options.out_dir) if options.out_dir.is_dir() else None
    model_sha, adapter_sha, hashes = model_fingerprints(options.model, options.adapter,
                                                        earlier.file_hashes if earlier else {}, hasher)
    key = RunKey(model_sha, adapter_sha, page_settings(options, resolution, hasher), hashes)
    folder = Folder(earlier, page_run_record_path(options.out_dir), options.out_dir / ANSWERS_FILE,
                    "ground truth and page images", "regions")
    outputs = plan_folder(folder, key, [r.id for r in regions], lambda: _finished(options, regions),
                          force=options.force, resume=options.resume)
    return _PageRun(options, regions, resolution, key, outputs, hasher, notes)


def write_markdown(options: PageRunOptions, regions: list[Region], answers: dict[str, str]) -> Path:
    """md/PAGE.md for every page, put in place as one set: staged in a hidden folder, then renamed."""
    target = options.out_dir / MARKDOWN_DIR
    staging = options.out_dir / f".{MARKDOWN_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    ensure_dir(staging)
    for name in page_names(options):
        blocks = [Block(r.label, answers[r.id]) for r in regions if r.page == name]
        # OmniDocBench looks for the image name less its last 4 characters + ".md"
        (staging / f"{name[:-4]}.md").write_text(page_markdown(blocks) + "\n", encoding="utf-8")
    old = options.out_dir / f".{MARKDOWN_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def run_pages(options: PageRunOptions, *, on_start: Callable[[list[str]], object] | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> tuple[Path, Any, bool]:
    """Reuse what the folder holds, or load the model, recognise every region (or page) not done yet,
    write md/ and page_scores.json; (md folder, PageScores, reused). SIGTERM and SIGHUP stop it as
    Ctrl-C does: the record says interrupted."""
    with stop_signals_interrupt():
        run = plan_page_run(options)
        if on_start:
            on_start(_plan(run))
        if run.outputs.action != "reuse":
            loaded = _load(run)  # a failure here writes nothing
            with output_lock(options.out_dir, what="page evaluation"):
                # again: another run may have written the folder while the model loaded
                run = plan_page_run(options, run.hasher)
                if run.outputs.action != "reuse":
                    _recognise_into(run, loaded, on_progress)
                    return (*_scored(run, finish=True), False)
        return (*_scored(run), True)


def _load(run: _PageRun) -> LoadedModel | None:
    """The model, unless every region is already done (an earlier run stopped before its record)."""
    if all(r.id in run.outputs.done for r in run.regions):
        return None
    from glmocr_lf.evaluation.generation import load_model

    o = run.options
    return load_model(o.model, o.adapter, o.device, verbose=o.verbose)


def _start(run: _PageRun, loaded: LoadedModel | None) -> None:
    """Clear what a regenerated run replaces, then record the run as running."""
    o = run.options
    out = ensure_dir(o.out_dir, "--out directory")
    for name in (SCORES_FILE, MARKDOWN_DIR) + ((ANSWERS_FILE,) if run.outputs.action in ("fresh", "regenerate") else ()):
        remove_path(out / name)
    run.record = PageRunRecord(
        model=o.model, adapter=str(o.adapter) if o.adapter else None, pages=str(o.pages), images=str(o.images),
        out_dir=str(o.out_dir), layout=LAYOUTS[o.whole_page], max_pages=o.max_pages,
        settings_source=run.resolution.source, batch_size=o.batch_size, device=loaded.device if loaded else None,
        regions=len(run.regions), model_sha256=run.key.model_sha256, adapter_sha256=run.key.adapter_sha256,
        settings=run.key.settings, file_hashes=run.key.file_hashes, status="running", started=now())
    write_page_run_record(out, run.record)


def _recognise_into(run: _PageRun, loaded: LoadedModel | None, on_progress: Callable[[int, int], None] | None) -> None:
    done = dict(run.outputs.done)
    _start(run, loaded)
    started = time.monotonic()
    try:  # from here the record says how the run ended
        with jsonl.Appender(run.options.out_dir / ANSWERS_FILE) as appender:
            _recognise(run.options, loaded, [r for r in run.regions if r.id not in done], done, appender,
                       run.resolution.max_pixels,
                       lambda: on_progress(len(done), len(run.regions)) if on_progress else None)
    except BaseException as err:
        run.record = _stopped(run.record, err, started)
        write_page_run_record(run.options.out_dir, run.record)
        raise
    run.outputs = OutputPlan(run.outputs.action, run.outputs.reasons, done)
    run.record = run.record.model_copy(update={"seconds": round(time.monotonic() - started, 2)})


def _scored(run: _PageRun, *, finish: bool = False) -> tuple[Path, Any]:
    """Score md/; a finished recognition writes md/ as one set, its scores, then the record that says
    it finished (last: a crash before it leaves a record that does not)."""
    from glmocr_lf.evaluation.omnidocbench.pagescore import score_pages

    o = run.options
    folder = write_markdown(o, run.regions, run.outputs.done) if finish else o.out_dir / MARKDOWN_DIR
    scores = score_pages(o.pages, folder)
    if finish:
        report = {**scores.to_json(), "layout": LAYOUTS[o.whole_page]}
        atomic_write_text(o.out_dir / SCORES_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        write_page_run_record(o.out_dir, run.record.model_copy(update={"status": "finished", "finished": now()}))
    return folder, scores


def _stopped(record: PageRunRecord, err: BaseException, started: float) -> PageRunRecord:
    """Ctrl-C, SIGTERM or SIGHUP (raised as it): interrupted; anything else: failed, with the error."""
    fields: dict[str, Any] = {"seconds": round(time.monotonic() - started, 2), "finished": now()}
    stop = stop_of(err)
    if stop is not None:
        fields.update(status="interrupted", signal=stop.signal if isinstance(stop, Interrupted) else None)
    else:
        fields.update(status="failed", error=str(err) or repr(err))
    return record.model_copy(update=fields)


def _plan(run: _PageRun) -> list[str]:
    o = run.options
    lines = [f"model: {o.model}" + (f" + adapter {o.adapter}" if o.adapter else ""),
             f"pages: {o.pages} ({len(page_names(o))} pages, {len(run.regions)} "
             f"{'calls, one per page' if o.whole_page else 'regions'}; {LAYOUTS[o.whole_page]})",
             f"images: at most {run.resolution.max_pixels} pixels (from {run.resolution.source})"]
    return lines + ([run.outputs.line] if run.outputs.line else []) + run.notes


def _recognise(options: PageRunOptions, loaded: LoadedModel | None, todo: list[Region], done: dict[str, str],
               appender: jsonl.Appender, max_pixels: int, tick: Callable[[], object]) -> None:
    if not todo or loaded is None:
        return
    from glmocr_lf.evaluation.dataset import EvalSample
    from glmocr_lf.evaluation.generation import generate

    crops = ensure_dir(options.out_dir / ".crops")
    for start in range(0, len(todo), options.batch_size):
        batch = todo[start:start + options.batch_size]
        samples = [EvalSample(r.id, None, IMAGE_PLACEHOLDER + TASK_PROMPTS[r.task], [crop(options, r, crops)], "")
                   for r in batch]
        for finished, answers in generate(loaded, samples, batch_size=options.batch_size, max_pixels=max_pixels,
                                          min_pixels=options.image_min_pixels, max_new_tokens=options.max_new_tokens,
                                          repetition_penalty=options.repetition_penalty):
            for sample, answer in zip(finished, answers, strict=True):
                appender.add({"id": sample.id, "answer": answer})
                done[sample.id] = answer
                (crops / sample.images[0].name).unlink(missing_ok=True)
        tick()
    shutil.rmtree(crops, ignore_errors=True)

"""`eval run --pages GT.json --images DIR`: page Markdown made with the model, then scored as
OmniDocBench scores pages (`omnidocbench.pagescore`).

Ground-truth layout (the default): each region of the ground truth is cropped (`data convert
--layout`'s reading and cropping), recognised with its task's prompt, and the answers are put
together in reading order as GLM-OCR's SDK writes a page (`pageformat`). The score is therefore
that of the recognition with a perfect layout, not of a layout model plus OCR. `--whole-page`:
one call per page image with the text prompt, for contrast.

Crash-safe and resumable like `eval run`: each answer is appended to regions.jsonl as it is made
(`--resume` continues after the last one, refused when the options that change answers, or the
content of the model, ground truth or page images, differ),
and the Markdown folder md/ is written as one set (staged, then renamed into place) at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data import jsonl
from glmocr_lf.data.layout import crop_box, read_pages
from glmocr_lf.evaluation.pageformat import GLM_LABELS, Block, page_markdown, task_of
from glmocr_lf.evaluation.run import check_model, model_fingerprints
from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER, LF_DEFAULT_IMAGE_MIN_PIXELS, TASK_PROMPTS
from glmocr_lf.runtime.errors import DataError, GlmocrLfError
from glmocr_lf.runtime.fsutil import atomic_write_text, check_dir_target, ensure_dir, output_lock
from glmocr_lf.runtime.modelfiles import Hasher
from glmocr_lf.runtime.process import Interrupted, stop_signals_interrupt
from glmocr_lf.runtime.records import PageRunRecord, read_page_run_record, write_page_run_record

ANSWERS_FILE = "regions.jsonl"
MARKDOWN_DIR = "md"
SCORES_FILE = "page_scores.json"
LAYOUTS = {False: "ground-truth layout", True: "whole page, one call"}
# options that change the answers: a resumed run must use the same ones
RESUME_KEYS = ("model", "adapter", "pages", "images", "whole_page", "max_new_tokens", "repetition_penalty",
               "image_max_pixels", "image_min_pixels", "margin",
               "model_sha256", "adapter_sha256", "pages_sha256", "images_sha256")
CONTENT_KEYS = {"model_sha256": "the model's files", "adapter_sha256": "the adapter's files",
                "pages_sha256": "the ground-truth file", "images_sha256": "the page images"}


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


def default_page_out_dir(pages: Path, whole_page: bool) -> Path:
    return Path("evals") / (Path(pages).stem + ("-whole-page" if whole_page else "-pages"))


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


def identity(options: PageRunOptions, hasher: Hasher) -> dict[str, str | None]:
    """What the answers are made from, by content: the model's and adapter's files, the ground
    truth and the page images it names (each file hashed once per command)."""
    model_sha, adapter_sha, _ = model_fingerprints(options.model, options.adapter, {}, hasher)
    images = [[name, hasher.sha256(page_image(options, name))] for name in page_names(options)]
    return {"model_sha256": model_sha, "adapter_sha256": adapter_sha, "pages_sha256": hasher.sha256(options.pages),
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


def _record(options: PageRunOptions, max_pixels: int, status: str, **extra: Any) -> PageRunRecord:
    # --force and --resume say how this command started, not what it made: the record ignores them
    values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    return PageRunRecord.model_validate({**values, "image_max_pixels": max_pixels, "layout": LAYOUTS[options.whole_page],
                                         "status": status, **extra})


def _finished(options: PageRunOptions, regions: list[Region], record: PageRunRecord) -> dict[str, str]:
    path = options.out_dir / ANSWERS_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    earlier = read_page_run_record(options.out_dir)
    # an option the earlier record does not name (an older glmocr-lf wrote it) is not compared
    changed = [_change(key, getattr(earlier, key), getattr(record, key)) for key in RESUME_KEYS
               if earlier is not None and key in earlier.model_fields_set and getattr(earlier, key) != getattr(record, key)]
    if earlier is not None and changed:
        raise GlmocrLfError(f"--resume: {earlier.path} was made with other options: "
                            + "; ".join(changed), hint="resume with the same options, or pass --force to start over")
    known = {r.id for r in regions}
    done = {str(rec["id"]): str(rec["answer"]) for _, rec in jsonl.read(path, "region answers file")}
    unknown = sorted(set(done) - known)
    if unknown:
        raise GlmocrLfError(f"--resume: {path} holds regions that are not in {options.pages} (first: {unknown[0]!r})",
                            hint="pass --force to start over")
    return done


def _change(key: str, then: Any, now: Any) -> str:
    if key in CONTENT_KEYS:
        def short(sha: Any) -> str:
            return str(sha)[:12] if sha else "none"
        return f"{CONTENT_KEYS[key]} changed (sha256 {short(then)} then, {short(now)} now)"
    return f"{key} {then!r}, now {now!r}"


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
              on_progress: Callable[[int, int], None] | None = None) -> tuple[Path, Any]:
    """Recognise every region (or page), write md/ and page_scores.json; (md folder, PageScores)."""
    from glmocr_lf.evaluation.settings import resolve_resolution

    check_dir_target(options.out_dir, "--out directory")
    answers_path = options.out_dir / ANSWERS_FILE
    if answers_path.exists() and not (options.force or options.resume):
        raise GlmocrLfError(f"{answers_path}: already exists",
                            hint="pass --resume to continue it, --force to start over, or --out another directory")
    regions = plan_regions(options)
    hasher = Hasher()
    notes = check_model(options.model, options.adapter, hasher)  # eval run's: stale merge, loadable, still training
    resolution = resolve_resolution(options.model, options.adapter, None, options.image_max_pixels,
                                    options.image_min_pixels)
    max_pixels = resolution.max_pixels
    record = _record(options, max_pixels, "running", regions=len(regions), **identity(options, hasher))
    with stop_signals_interrupt(), output_lock(options.out_dir, what="page evaluation"):
        if options.force and not options.resume:
            atomic_write_text(answers_path, "")
        with jsonl.Appender(answers_path) as appender:
            done = _finished(options, regions, record) if options.resume else {}
            if on_start:
                on_start(_plan(options, regions, done, max_pixels, resolution.source) + notes)
            write_page_run_record(options.out_dir, record)
            started = time.monotonic()
            try:  # from here the record says how the run ended
                _recognise(options, [r for r in regions if r.id not in done], done, appender, max_pixels,
                           lambda: on_progress(len(done), len(regions)) if on_progress else None)
            except BaseException as err:
                write_page_run_record(options.out_dir, _stopped(record, err, started))
                raise
        folder = write_markdown(options, regions, done)
        from glmocr_lf.evaluation.omnidocbench.pagescore import score_pages

        scores = score_pages(options.pages, folder)
        report = {**scores.to_json(), "layout": LAYOUTS[options.whole_page]}
        atomic_write_text(options.out_dir / SCORES_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        write_page_run_record(options.out_dir, record.model_copy(update={
            "status": "finished", "seconds": round(time.monotonic() - started, 2)}))
    return folder, scores


def _stopped(record: PageRunRecord, err: BaseException, started: float) -> PageRunRecord:
    """Ctrl-C, SIGTERM or SIGHUP (raised as it): interrupted; anything else: failed, with the error."""
    fields: dict[str, Any] = {"seconds": round(time.monotonic() - started, 2)}
    if isinstance(err, KeyboardInterrupt):
        fields.update(status="interrupted", signal=err.signal if isinstance(err, Interrupted) else None)
    else:
        fields.update(status="failed", error=str(err) or repr(err))
    return record.model_copy(update=fields)


def _plan(options: PageRunOptions, regions: list[Region], done: dict[str, str], max_pixels: int, source: str) -> list[str]:
    lines = [f"model: {options.model}" + (f" + adapter {options.adapter}" if options.adapter else ""),
             f"pages: {options.pages} ({len(page_names(options))} pages, {len(regions)} "
             f"{'calls, one per page' if options.whole_page else 'regions'}; {LAYOUTS[options.whole_page]})",
             f"images: at most {max_pixels} pixels (from {source})"]
    if options.resume:
        lines.append(f"resuming: {len(done)} of {len(regions)} already in {options.out_dir / ANSWERS_FILE}")
    return lines


def _recognise(options: PageRunOptions, todo: list[Region], done: dict[str, str], appender: jsonl.Appender,
               max_pixels: int, tick: Callable[[], object]) -> None:
    if not todo:
        return
    from glmocr_lf.evaluation.dataset import EvalSample
    from glmocr_lf.evaluation.generation import generate, load_model

    loaded = load_model(options.model, options.adapter, options.device, verbose=options.verbose)
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

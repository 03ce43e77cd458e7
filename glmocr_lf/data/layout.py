"""`data convert --layout FILE`: page annotations to region crops, the way GLM-OCR reads a page.

GLM-OCR's pipeline crops each region a layout detector finds and reads the crop with its task's
prompt, so fine-tuning data is crops: each annotated region (box + category + text/HTML/LaTeX) is cut
from its page with a margin (clamped to the page), stored under its hash in OUT_images/ and paired
with the prompt of its category's task. Two formats are read:

- COCO: `images` (id, file_name), `annotations` (image_id, bbox [x, y, w, h], category_id and a
  `text`, `html` or `latex` field), `categories` (id, name);
- OmniDocBench: a list of pages, each `page_info.image_path` and `layout_dets` (category_type,
  poly [x1, y1, ..., x4, y4], text/html/latex, ignore).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.data.collected import Collected, Progress, images_dir, sharegpt
from glmocr_lf.data.imagestore import store
from glmocr_lf.data.resize import PROCESSOR_MIN_PIXELS
from glmocr_lf.runtime.constants import TASK_PROMPTS
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import decode_utf8, read_bytes

SKIP = "skip"
TEXT_CATEGORIES = (
    "text", "text_block", "plain_text", "paragraph", "title", "section_header", "list", "list_item",
    "caption", "footnote", "page_header", "page_footer", "header", "footer", "page_number",
    "page_footnote", "figure_caption", "figure_footnote", "table_caption", "table_footnote",
    "equation_caption", "reference", "code_txt", "code_txt_caption", "abstract",
)
FORMULA_CATEGORIES = ("formula", "equation", "equation_isolated", "isolate_formula", "interline_equation",
                      "display_formula")
DEFAULT_CATEGORY_MAP: dict[str, str] = {
    **dict.fromkeys(TEXT_CATEGORIES, "text"), "table": "table", **dict.fromkeys(FORMULA_CATEGORIES, "formula")}
# the annotation field holding a region's target, by task (first present wins)
ANSWER_FIELDS = {"text": ("text", "content"), "table": ("html", "text", "content"),
                 "formula": ("latex", "text", "content")}
SMALL_LISTED = 20


@dataclass(frozen=True)
class LayoutOptions:
    file: Path
    margin: int = 4
    category_map: dict[str, str] = field(default_factory=dict)  # category -> task or "skip"


@dataclass(frozen=True)
class _Region:
    category: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels
    fields: dict[str, Any]
    ignore: bool = False


@dataclass(frozen=True)
class _Page:
    where: str  # `page N (file)` for messages
    image: str
    regions: list[_Region]
    declared: tuple[Any, Any] | None = None  # the width and height the annotation file gives


def category_key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def parse_category_map(items: Iterable[str]) -> dict[str, str]:
    """`NAME=TASK` pairs (TASK: text, table, formula or skip) to a map on normalised names."""
    mapping: dict[str, str] = {}
    choices = (*TASK_PROMPTS, SKIP)
    for item in items:
        name, sep, task = item.partition("=")
        if not sep or not name.strip() or task.strip() not in choices:
            raise DataError(f"--category-map {item!r}: expected CATEGORY=TASK with TASK one of {', '.join(choices)}")
        mapping[category_key(name)] = task.strip()
    return mapping


def collect_layout(source: Path, options: LayoutOptions, output: Path, *, prompt: str | None = None,
                   progress: Progress | None = None) -> Collected:
    if not source.is_dir():
        raise DataError(f"{source}: not a folder; with --layout, SOURCE is the folder of page images")
    pages = read_pages(options.file)
    mapping = {**DEFAULT_CATEGORY_MAP, **options.category_map}
    folder = images_dir(output)
    collected = Collected(images_dir=folder)
    small: list[str] = []
    out_dir = os.path.abspath(output.parent)
    for number, page in enumerate(pages, start=1):
        _crop_page(source, page, mapping, options.margin, prompt, folder, out_dir, collected, small)
        if progress:
            progress(number, len(pages))
    if small:
        listed = "; ".join(small[:SMALL_LISTED]) + (f"; and {len(small) - SMALL_LISTED} more"
                                                     if len(small) > SMALL_LISTED else "")
        collected.warnings.append(
            f"{len(small)} region{'s' * (len(small) != 1)} smaller than the processor minimum "
            f"({PROCESSOR_MIN_PIXELS} pixels, 112x112), upscaled when read: {listed}")
    return collected


def _crop_page(source: Path, page: _Page, mapping: dict[str, str], margin: int, prompt: str | None,
               folder: Path, out_dir: str, collected: Collected, small: list[str]) -> None:
    wanted = [(i, r, mapping.get(category_key(r.category), SKIP)) for i, r in enumerate(page.regions)]
    for _, region, task in wanted:
        if task == SKIP or region.ignore:
            label = region.category if task == SKIP else f"{region.category} (ignore)"
            collected.skipped[label] = collected.skipped.get(label, 0) + 1
    wanted = [(i, r, t) for i, r, t in wanted if t != SKIP and not r.ignore]
    if not wanted:
        return
    from PIL import Image

    try:
        with Image.open(source / page.image) as opened:
            opened.load()
            # a copy: closing the file would take the pixels of `opened` with it
            image = opened.copy() if opened.mode in ("1", "L", "LA", "RGB", "RGBA", "P") else opened.convert("RGB")
    except FileNotFoundError:
        collected.problems.append(f"{page.where}: image: not found: {source / page.image}")
        return
    except Exception as err:  # PIL raises many types for unreadable images
        collected.problems.append(f"{page.where}: image: cannot read {source / page.image}: {err}")
        return
    width, height = image.size
    _check_declared_size(page, width, height, collected)
    for index, region, task in wanted:
        where = f"{page.where}: region {index} ({region.category})"
        answer = _answer(region, task, where, collected)
        box = crop_box(region.box, margin, width, height)
        if answer is None:
            collected.problems.append(f"{where}: {'/'.join(ANSWER_FIELDS[task])}: missing or empty "
                                      f"(the target of a {task} region)")
        if box is None:
            collected.problems.append(f"{where}: bbox: {_fmt(region.box)} is empty or outside the "
                                      f"{width}x{height} page")
        if answer is None or box is None or collected.problems:
            continue
        crop = image.crop(box)
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        path, _ = store(folder, buffer.getvalue(), ".png")
        rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
        _, sample = sharegpt(rel, prompt if prompt is not None else TASK_PROMPTS[task], answer)
        # keyed by the page: --val-ratio holds out whole pages, never one region of a trained page
        collected.samples.append((f"page {page.image}", sample))
        collected.counts[region.category] = collected.counts.get(region.category, 0) + 1
        if crop.width * crop.height < PROCESSOR_MIN_PIXELS:
            small.append(f"{where} {crop.width}x{crop.height}")


def _check_declared_size(page: _Page, width: int, height: int, collected: Collected) -> None:
    if page.declared is not None and page.declared != (width, height):
        collected.warnings.append(f"{page.where}: the annotations declare {page.declared[0]}x{page.declared[1]}, "
                                  f"the image is {width}x{height}: its boxes are read in the image's pixels "
                                  "(check that they belong to this image)")


def _answer(region: _Region, task: str, where: str, collected: Collected) -> str | None:
    """The region's target: its task's first field present (a table's html, a formula's latex),
    warned about when it falls back to plain text, which GLM-OCR does not answer those tasks in."""
    fields = ANSWER_FIELDS[task]
    name = next((k for k in fields if isinstance(region.fields.get(k), str) and region.fields[k].strip()), None)
    if name is not None and name != fields[0] and task != "text":
        collected.warnings.append(f"{where}: no {fields[0]}; its {name} is the target of a {TASK_PROMPTS[task]} "
                                  f"sample, which GLM-OCR answers in {'HTML' if task == 'table' else 'LaTeX'}")
    return str(region.fields[name]) if name is not None else None


def crop_box(box: Sequence[float], margin: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The pixel box to crop: the annotation box grown by `margin` (outward to whole pixels) and
    clamped to the page; None when nothing of it is on the page."""
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        return None
    left, top = max(0, math.floor(x0 - margin)), max(0, math.floor(y0 - margin))
    right, bottom = min(width, math.ceil(x1 + margin)), min(height, math.ceil(y1 + margin))
    if right <= left or bottom <= top or x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
        return None
    return left, top, right, bottom


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def read_pages(path: Path) -> list[_Page]:
    text = decode_utf8(path, read_bytes(path, "layout annotation file"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list):
        return _coco_pages(path, data)
    if isinstance(data, list) and all(isinstance(p, dict) and "layout_dets" in p for p in data):
        return _omnidocbench_pages(path, data)
    raise DataError(f"{path}: not a COCO file (images, annotations, categories) nor OmniDocBench pages "
                    "(a list of {layout_dets, page_info})")


def _number_box(value: Any, size: int) -> list[float] | None:
    if (isinstance(value, list) and len(value) >= size
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return None


def _coco_pages(path: Path, data: dict[str, Any]) -> list[_Page]:
    names = {c.get("id"): str(c.get("name", c.get("id"))) for c in data.get("categories", []) if isinstance(c, dict)}
    problems: list[str] = []
    pages: dict[Any, _Page] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            problems.append(f"images[{i}]: file_name: missing")
            continue
        declared = (image["width"], image["height"]) if "width" in image and "height" in image else None
        pages[image.get("id")] = _Page(f"page {i} ({image['file_name']})", image["file_name"], [], declared)
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.append(f"annotations[{i}]: expected an object")
            continue
        bbox = _number_box(ann.get("bbox"), 4)
        if ann.get("image_id") not in pages:
            problems.append(f"annotations[{i}]: image_id: no image with this id")
        if bbox is None:
            problems.append(f"annotations[{i}]: bbox: expected [x, y, width, height]")
        if names and ann.get("category_id") not in names:
            problems.append(f"annotations[{i}]: category_id: {ann.get('category_id')!r} is not in categories")
        if ann.get("image_id") in pages and bbox is not None:
            x, y, w, h = bbox[:4]
            category = names.get(ann.get("category_id"), str(ann.get("category_id")))
            pages[ann["image_id"]].regions.append(
                _Region(category, (x, y, x + w, y + h), ann, bool(ann.get("ignore") or ann.get("iscrowd"))))
    _raise(path, problems)
    return list(pages.values())


def _omnidocbench_pages(path: Path, data: list[dict[str, Any]]) -> list[_Page]:
    problems: list[str] = []
    pages: list[_Page] = []
    for i, page in enumerate(data):
        info = page.get("page_info")
        image = info.get("image_path") if isinstance(info, dict) else None
        if not isinstance(image, str):
            problems.append(f"[{i}].page_info.image_path: missing")
        dets = page["layout_dets"]
        if not isinstance(dets, list):
            problems.append(f"[{i}].layout_dets: expected a list")
            dets = []
        regions = []
        for j, det in enumerate(dets):
            if not isinstance(det, dict):
                problems.append(f"[{i}].layout_dets[{j}]: expected an object")
                continue
            poly = _number_box(det.get("poly"), 8)
            if not isinstance(det.get("category_type"), str):
                problems.append(f"[{i}].layout_dets[{j}].category_type: missing")
            if poly is None:
                problems.append(f"[{i}].layout_dets[{j}].poly: expected [x1, y1, ..., x4, y4]")
            if poly is not None and isinstance(det.get("category_type"), str):
                xs, ys = poly[0::2], poly[1::2]
                regions.append(_Region(det["category_type"], (min(xs), min(ys), max(xs), max(ys)), det,
                                       bool(det.get("ignore"))))
        if isinstance(image, str):
            declared = ((info["width"], info["height"]) if isinstance(info, dict) and "width" in info
                        and "height" in info else None)
            pages.append(_Page(f"page {i} ({image})", image, regions, declared))
    _raise(path, problems)
    return pages


def _raise(path: Path, problems: list[str]) -> None:
    if problems:
        raise DataError(f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}\n"
                        + "\n".join(f"  {p}" for p in problems))

"""`data convert`: common OCR dataset shapes to GLM-OCR ShareGPT (image first, then the task prompt).

Sources: a folder of images with same-stem targets (`.txt`/`.md` text, `.html` table, `.tex`
formula), or a JSONL / CSV file with `image`, `text` and optional `task` columns (image paths
relative to that file); Parquet, Arrow and hub datasets (`tabular.py`); page annotations cut into
region crops (`layout.py`). Output image paths are relative to the output file's folder, so
`glmocr-lf data validate OUT` finds them without `--media-dir`.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import random
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmocr_lf.data import jsonl
from glmocr_lf.data.collected import Collected, Progress
from glmocr_lf.data.imagecheck import ImageCheck, ImageChecker, ImageRequest
from glmocr_lf.data.samples import unencodable
from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER, TASK_PROMPTS
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import (
    check_file_target,
    decode_utf8,
    finish_pending,
    output_lock,
    read_bytes,
    replace_together,
)

if TYPE_CHECKING:
    from glmocr_lf.data.layout import LayoutOptions
    from glmocr_lf.data.tabular import TabularOptions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TARGET_TASKS = {".txt": "text", ".md": "text", ".html": "table", ".tex": "formula"}
# the longest page transcription is tens of KB; a target this big is a wrong or sparse file
MAX_TARGET_BYTES = 16 * 2**20


@dataclass
class ConvertResult:
    train: Path
    train_samples: int
    val: Path | None = None
    val_samples: int = 0
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # converted, per task or layout category
    skipped: dict[str, int] = field(default_factory=dict)  # layout regions left out, per category
    split: dict[str, tuple[int, int]] = field(default_factory=dict)  # per task prompt: (train, held out)
    removed: Path | None = None  # a stale OUT_val.json that --force without --val-ratio removed


@dataclass(frozen=True)
class _Row:
    where: str  # FILE:LINE or the image path, for messages
    image: Path
    text: str
    task: str | None


def val_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_val{output.suffix or '.json'}")


def convert(source: Path, output: Path, *, task: str | None = None, prompt: str | None = None,
            val_ratio: float = 0.0, seed: int = 0, force: bool = False,
            tabular: TabularOptions | None = None, layout: LayoutOptions | None = None,
            progress: Progress | None = None) -> ConvertResult:
    if task is not None and task not in TASK_PROMPTS:
        raise DataError(f"unknown task {task!r}; use one of {', '.join(TASK_PROMPTS)}")
    if not 0 <= val_ratio < 1:
        raise DataError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    # before any reader extracts images into OUT_images/: a file in the way is one error line
    check_file_target(output)
    with output_lock(output, what="convert output"):
        finish_pending([output, val_path(output)])  # a convert killed among its renames
        _refuse_existing(output, val_ratio, force)
        collected = _collect(source, output, task, prompt, tabular, layout, progress)
        return _write(source, output, collected, val_ratio, seed)


def _refuse_existing(output: Path, val_ratio: float, force: bool) -> None:
    val = val_path(output)
    for target in [output] + ([val] if val_ratio > 0 else []):
        if target.exists() and not force:
            raise DataError(f"{target}: already exists", hint="pass --force to overwrite it")
    if val_ratio == 0 and val.exists() and not force:
        # written beside a new OUT.json it would hold samples that are also in it
        raise DataError(f"{val}: already exists beside {output.name}; without --val-ratio it would be stale",
                        hint="pass --val-ratio to rewrite both, or --force to write the output and remove it")


def _collect(source: Path, output: Path, task: str | None, prompt: str | None,
             tabular: TabularOptions | None, layout: LayoutOptions | None,
             progress: Progress | None) -> Collected:
    if layout is not None:
        from glmocr_lf.data.layout import collect_layout

        collected = collect_layout(source, layout, output, prompt=prompt, progress=progress)
    elif _is_tabular(source):
        from glmocr_lf.data.tabular import TabularOptions, collect_tabular

        collected = collect_tabular(source, tabular or TabularOptions(), output, task=task,
                                    prompt=prompt, progress=progress)
    else:
        if not source.exists():
            raise DataError(f"{source}: no such file or directory")
        _refuse_column_options(tabular)
        collected = _collect_files(source, output, task, prompt)
    return collected


def _refuse_column_options(tabular: TabularOptions | None) -> None:
    from glmocr_lf.data.tabular import TabularOptions

    if tabular is not None and tabular != TabularOptions():
        raise DataError("--image-col, --text-col, --task-col and --split apply to Parquet, Arrow and hub "
                        "sources; a folder or JSONL/CSV file uses image, text[, task]")


def _is_tabular(source: Path) -> bool:
    from glmocr_lf.data.tabular import is_tabular_source

    return is_tabular_source(source)


def _collect_files(source: Path, output: Path, task: str | None, prompt: str | None) -> Collected:
    collected = Collected()
    if source.is_dir():
        rows = _folder_rows(source, collected)
    elif source.suffix.lower() == ".csv":
        rows = _table_rows(source, _csv_records(source), collected.problems)
    else:
        rows = _table_rows(source, _jsonl_records(source), collected.problems)
    problems = collected.problems
    out_dir = os.path.abspath(output.parent)
    checks = _check_images([row.image for row in rows])
    for row, check in zip(rows, checks, strict=True):
        row_task = row.task or task or "text"
        if row_task not in TASK_PROMPTS:
            problems.append(f"{row.where}: task: unknown task {row_task!r}; use one of {', '.join(TASK_PROMPTS)}")
            continue
        if check.error is not None:  # the validator's checks: missing, empty, truncated, unreadable
            problems.append(f"{row.where}: image: {check.error}")
            continue
        if not row.text.strip():
            problems.append(f"{row.where}: text: empty target text")
            continue
        rel = os.path.relpath(os.path.abspath(row.image), out_dir).replace(os.sep, "/")
        collected.add(rel, row_task, prompt, row.text)
    return collected


def _check_images(paths: list[Path]) -> list[ImageCheck]:
    with ImageChecker(len(paths)) as checker:
        for path in paths:
            checker.submit(ImageRequest(os.path.normpath(os.path.abspath(path)), None))
        return checker.results()


def _write(source: Path | str, output: Path, collected: Collected, val_ratio: float, seed: int) -> ConvertResult:
    problems, samples, warnings = collected.problems, collected.samples, collected.warnings
    if problems:
        kept = (f"; {output} not written (images already extracted stay in {collected.images_dir})"
                if collected.images_dir is not None and collected.images_dir.is_dir() else "; nothing written")
        raise DataError(f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)}{kept}\n"
                        + "\n".join([f"  {p}" for p in problems] + [f"  warning: {w}" for w in warnings]))
    if not samples:
        raise DataError(f"{source}: nothing to convert")
    leaving = next((image for _, sample in samples for image in sample["images"] if image.startswith("../")), None)
    if leaving is not None:
        beside = shlex.quote(output.name)
        warnings.append(f"image paths leave {output.parent or '.'} (e.g. {leaving}): `data register` refuses "
                        f"them; write the output beside or above the images (e.g. -o {beside})")
    train, val = split_samples(samples, val_ratio, seed)
    result = ConvertResult(output, len(train), warnings=warnings, counts=collected.counts,
                           skipped=collected.skipped)
    # train and val are one result: both files change together or neither does
    texts: dict[Path, str | None] = {output: _dump(train), val_path(output): _dump(val) if val_ratio > 0 else None}
    changes = {path: text for path, text in texts.items() if not _unchanged(path, text)}
    replace_together(changes)
    if changes.get(val_path(output), "") is None:
        result.removed = val_path(output)
    if val_ratio > 0:
        result.val, result.val_samples = val_path(output), len(val)
        for part, index in ((train, 0), (val, 1)):
            for sample in part:
                counts = list(result.split.get(_prompt(sample), (0, 0)))
                counts[index] += 1
                result.split[_prompt(sample)] = (counts[0], counts[1])
    return result


def _unchanged(path: Path, text: str | None) -> bool:
    """Whether `path` already holds `text` (None: is absent): a re-run over the same source leaves
    every file as it was, mtime included."""
    if text is None:
        return not (path.exists() or path.is_symlink())
    try:
        return path.is_file() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _prompt(sample: dict[str, Any]) -> str:
    return str(sample["messages"][0]["content"]).replace(IMAGE_PLACEHOLDER, "").strip()


def split_samples(samples: list[tuple[str, dict[str, Any]]], ratio: float, seed: int
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) from (image key, sample) pairs, stratified by task prompt: about `ratio`
    of each task's distinct keys are held out (at least one of a task with two or more), chosen
    by `seed`; no key is in both, and the order of the input is kept. The key is the image, or
    for layout crops their page."""
    if ratio <= 0:
        return [s for _, s in samples], []
    by_task: dict[str, list[str]] = {}
    first_task: dict[str, str] = {}
    for rel, sample in samples:  # an image used by several tasks goes with its first one
        if rel not in first_task:
            first_task[rel] = _prompt(sample)
            by_task.setdefault(first_task[rel], []).append(rel)
    held: set[str] = set()
    rng = random.Random(seed)
    for task in sorted(by_task):
        images = sorted(by_task[task])
        rng.shuffle(images)
        count = max(1, round(len(images) * ratio)) if len(images) > 1 else 0
        held.update(images[:count])
    return [s for rel, s in samples if rel not in held], [s for rel, s in samples if rel in held]


def _dump(samples: list[dict[str, Any]]) -> str:
    return json.dumps(samples, indent=2, ensure_ascii=False) + "\n"


def not_a_file(path: Path) -> str | None:
    """Why `path` (an entry of a convert folder) is not a regular file we can read, or None."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
        if path.is_symlink():
            return f"is a broken symlink (to {os.readlink(path)})"
        return f"cannot be read: {err.strerror or err}"
    if stat.S_ISREG(mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
    link = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
    return f"is {kind}{link}, not a file"


def _folder_rows(folder: Path, collected: Collected) -> list[_Row]:
    rows = []
    entries = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES or p.suffix in TARGET_TASKS)
    unusable = {p: why for p in entries if (why := not_a_file(p)) is not None}
    for path, why in unusable.items():
        collected.warnings.append(f"{path}: {why}; skipped")
    files = [p for p in entries if p not in unusable]
    usable = set(files)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    stems = {p.with_suffix("") for p in images}
    broken_stems = {p.with_suffix("") for p in unusable}
    for target in (p for p in files if p.suffix in TARGET_TASKS and p.with_suffix("") not in stems
                   and p.with_suffix("") not in broken_stems):
        collected.warnings.append(f"{target}: no image of the same name beside it; skipped")
    for image in images:
        found = [image.with_suffix(s) for s in TARGET_TASKS if image.with_suffix(s) in usable]
        if not found:
            if not any(image.with_suffix(s) in unusable for s in TARGET_TASKS):
                collected.warnings.append(f"{image}: no .txt/.md/.html/.tex target beside it; skipped")
            continue
        if len(found) > 1:
            collected.problems.append(f"{image}: several targets ({', '.join(p.name for p in found)}); keep one")
            continue
        size = found[0].stat().st_size
        if size > MAX_TARGET_BYTES:
            collected.problems.append(f"{found[0]}: {size:,} bytes; a target text is at most "
                                      f"{MAX_TARGET_BYTES // 2**20} MiB (is it the right file?)")
            continue
        try:
            text = decode_utf8(found[0], read_bytes(found[0], "target file")).strip("\n")
        except DataError as err:
            collected.problems.append(err.message)
            continue
        rows.append(_Row(str(found[0]), image, text, TARGET_TASKS[found[0].suffix]))
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return rows


def _csv_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV file with the line each starts on. An unbalanced quote is an error, not
    one sample whose text swallows the rows after it."""
    text = decode_utf8(path, read_bytes(path, "CSV file"))
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{path}:{line}: NUL byte in a CSV file; is it a CSV text file?")
    reader = csv.DictReader(io.StringIO(text), strict=True)
    lines = text.count("\n") + (not text.endswith("\n"))
    records: list[tuple[int, dict[str, Any]]] = []
    start = 2
    try:
        for row in reader:
            records.append((start, dict(row)))
            _swallowed_rows(path, start, row, reader.fieldnames or [])
            start = reader.line_num + 1
    except csv.Error as err:
        if "unexpected end of data" in str(err):
            raise DataError(f"{path}:{start}: a quoted field opens on this line and never closes; it would "
                            f"swallow every line after it (read {len(records)} rows, the file has {lines - 1} "
                            "lines after the header)", hint="balance the quotes (a quote inside a field is \"\")") from None
        raise DataError(f"{path}:{start}: invalid CSV in the row starting on this line (read {len(records)} "
                        f"rows before it): {err}", hint="check the quotes (a quote inside a field is \"\")") from None
    return records


def _swallowed_rows(path: Path, start: int, row: dict[str, Any], columns: Sequence[str]) -> None:
    """A quoted text whose lines read as rows of this file (`IMAGE,...`): its quote closed late."""
    for value in row.values():
        if not isinstance(value, str) or "\n" not in value:
            continue
        inner = value.split("\n")[1:]
        looks = [line for line in inner
                 if len(next(csv.reader([line]), [])) == len(columns) and line.split(",", 1)[0].lower().endswith(IMAGE_SUFFIXES)]
        if looks:
            raise DataError(f"{path}:{start}: a quoted field opens on this line and holds {len(looks)} lines "
                            f"that read as rows ({looks[0][:60]!r}...): its closing quote is missing",
                            hint="balance the quotes (a quote inside a field is \"\")")


def _jsonl_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records = jsonl.read(path, "JSONL or CSV file")
    for lineno, item in records:
        if not isinstance(item, dict):
            raise DataError(f"{path}:{lineno}: expected an object with image and text")
    return records


def _table_rows(path: Path, records: list[tuple[int, dict[str, Any]]], problems: list[str]) -> list[_Row]:
    if not records:
        raise DataError(f"{path}: no rows")
    rows = []
    base = path.parent
    for lineno, record in records:
        where = f"{path}:{lineno}"
        missing = [c for c in ("image", "text") if not isinstance(record.get(c), str)]
        if missing:
            problems.extend(f"{where}: {c}: missing or not a string (columns: image, text[, task])" for c in missing)
            continue
        bad = unencodable(record)
        if bad:
            problems.extend(f"{where}: {field}: {message}" for field, message in bad)
            continue
        if "\x00" in record["image"]:
            problems.append(f"{where}: image: path contains a NUL byte (\\u0000)")
            continue
        task = record.get("task")
        rows.append(_Row(where, base / record["image"], record["text"], str(task) if task else None))
    return rows

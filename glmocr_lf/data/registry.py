"""Stage datasets into a LLaMA-Factory data folder and keep its `dataset_info.json` in order.

Layout (the vendor guide's, one name per dataset): `DATA/NAME.json` holds the samples with image
paths rewritten to `NAME/vDIGEST/<path relative to the media dir>`, and `DATA/NAME/vDIGEST/` holds
the images, so every path resolves from DATA, LLaMA-Factory's default `media_dir`; switching
versions is one rename (`staging.py`). `symlink` (default) links the top-level folders and files
the images live in; `hardlink` and `copy` stage each image file.
`dataset_info.json` is changed only under a file lock and replaced atomically: concurrent
registrations never lose an entry, and any error leaves the file byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.data.info import (
    DatasetEntry,
    entries,
    info_lock,
    read_info,
    unknown_name,
    write_info,
)
from glmocr_lf.data.report import CheckOptions, ValidationReport
from glmocr_lf.data.samples import read_samples
from glmocr_lf.data.staging import clean_leftovers, is_staged, make_plan, swap_in
from glmocr_lf.data.validate import Progress, resolve_media_dir, validate_file
from glmocr_lf.runtime.constants import (
    DATA_DIR,
    DATASET_INFO,
    DATASET_NAME_PATTERN,
    DATASET_NAME_RULE,
    LinkMode,
)
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import ensure_dir, is_inside, remove_path

Status = Literal["added", "unchanged", "replaced"]
NAME_RE = re.compile(f"^{DATASET_NAME_PATTERN}$")
MAX_NAME_CHARS = 128
# NAME.json of these is a file the registry keeps (case-insensitive file systems included)
RESERVED_NAMES = frozenset({Path(DATASET_INFO).stem.lower()})

SHAREGPT_COLUMNS = {"messages": "messages", "images": "images"}
SHAREGPT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


class InvalidDatasetError(DataError):
    """Validation found errors; nothing was written. Carries the report for rendering."""

    def __init__(self, report: ValidationReport) -> None:
        errors = len(report.errors)
        super().__init__(f"{report.file}: {errors} error{'s' * (errors != 1)}; nothing registered",
                         hint=f"fix them, then run `glmocr-lf data validate {shlex.quote(str(report.file))}`")
        self.report = report


class AlreadyRegisteredError(DataError):
    """NAME is registered, or its staging path taken, with other content, and --force was not given."""


@dataclass(frozen=True)
class RegisterResult:
    name: str
    status: Status
    data_dir: Path
    dataset_file: Path
    samples: int
    images: int
    report: ValidationReport
    in_place: bool = False  # FILE already sat in the data dir and is registered as it is


@dataclass(frozen=True)
class DatasetListing:
    name: str
    file: str  # file_name, or the hub/script source
    samples: int | None  # None: not a local file we could read
    images: int | None
    problem: str | None = None  # why its file is not read (it lies outside the data dir)


def sharegpt_entry(file_name: str) -> dict[str, Any]:
    """The `dataset_info.json` entry for a GLM-OCR ShareGPT file (the vendor's recipe)."""
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": dict(SHAREGPT_COLUMNS), "tags": dict(SHAREGPT_TAGS)}


def resolve_data_dir(data_dir: Path | None, lf_dir: Path | None, *, create: bool = False) -> Path:
    """`--lf-dir PATH` means PATH/data (must exist); otherwise `--data-dir`, default `./data`."""
    if lf_dir is not None:
        if data_dir is not None:
            raise DataError("pass either --data-dir or --lf-dir, not both")
        if not lf_dir.is_dir():
            raise DataError(f"{lf_dir}: LLaMA-Factory folder does not exist")
        target = lf_dir / DATA_DIR
        if not target.is_dir():
            raise DataError(f"{lf_dir}: no data/ folder; is this a LLaMA-Factory checkout?")
        return target
    target = data_dir if data_dir is not None else Path(DATA_DIR)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: data dir is not a directory")
    if create:
        ensure_dir(target, "data dir")
    return target


def check_name(name: str) -> str:
    """A name registering can stage as DATA/NAME.json and DATA/NAME/ without touching anything else."""
    if not NAME_RE.match(name) or len(name) > MAX_NAME_CHARS:
        raise DataError(f"{name!r}: invalid dataset name; {DATASET_NAME_RULE} "
                        f"(at most {MAX_NAME_CHARS}, starting with a letter or digit)")
    if name.lower() in RESERVED_NAMES:
        raise DataError(f"{name!r}: reserved; DATA/{name}.json would be the registry's own file",
                        hint="pick another name")
    return name


def _stageable(name: str) -> bool:
    try:
        check_name(name)
    except DataError:
        return False
    return True


def register_dataset(name: str, file: Path, data_dir: Path, *, options: CheckOptions | None = None,
                     link: LinkMode = "symlink", force: bool = False,
                     progress: Progress | None = None) -> RegisterResult:
    """Validate FILE, stage it into DATA as NAME and add the entry; raises before writing on errors."""
    check_name(name)
    options = options or CheckOptions()
    report = validate_file(file, options, progress=progress)
    if report.errors:
        raise InvalidDatasetError(report)
    root = resolve_media_dir(file, options.media_dir)
    in_place = _in_place(name, file, root, data_dir)
    if in_place is not None:
        return _register_in_place(name, in_place, data_dir, report, force=force)
    plan = make_plan(name, report, root, link)
    entry = sharegpt_entry(f"{name}.json")
    ensure_dir(data_dir, "data dir")
    info_path = data_dir / DATASET_INFO
    with info_lock(data_dir):
        info = read_info(data_dir)
        clean_leftovers(data_dir, name)
        staged_file, staged_dir = data_dir / f"{name}.json", data_dir / name
        status: Status = "added"
        staged = is_staged(data_dir, plan)
        if name in info:
            if info[name] == entry and staged:
                return RegisterResult(name, "unchanged", data_dir, staged_file, plan.samples, plan.images, report)
            if not force:
                raise AlreadyRegisteredError(f"{name!r} is already registered in {info_path} with different content",
                                             hint="pass --force to replace it")
            status = "replaced"
        elif not force and not staged:  # staged: a run killed before it added the entry
            for existing in (staged_file, staged_dir):
                if existing.exists() or existing.is_symlink():
                    raise AlreadyRegisteredError(f"{existing}: already exists and is not a registered dataset",
                                                 hint="pick another name, or pass --force to overwrite it")
        if staged:  # only the entry is missing (a run killed after its switch) or different
            write_info(data_dir, {**info, name: entry})
        else:
            swap_in(data_dir, plan, lambda: write_info(data_dir, {**info, name: entry}))
    return RegisterResult(name, status, data_dir, staged_file, plan.samples, plan.images, report)


def _in_place(name: str, file: Path, root: Path, data_dir: Path) -> str | None:
    """FILE's name relative to DATA when it already sits there with images resolving from DATA
    (the vendor guide's layout): it is registered as it is. Staging must never write over FILE
    (DATA/NAME.json) or replace the folder it or its images live in (DATA/NAME/)."""
    data_abs = data_dir.resolve()
    file_abs, root_abs = file.resolve(), root.resolve()
    if is_inside(file_abs, data_abs) and root_abs == data_abs:
        return file_abs.relative_to(data_abs).as_posix()
    hint = (f"register it from outside {data_dir} (register stages a copy), or keep its image paths "
            f"relative to {data_dir} and pass --media-dir {data_dir}")
    if file_abs == data_abs / f"{name}.json":
        raise DataError(f"{file}: is the file registering {name!r} writes, and its images resolve from {root}, "
                        f"not from {data_dir}", hint=hint)
    if is_inside(file_abs, data_abs / name) or is_inside(root_abs, data_abs / name):
        raise DataError(f"{file}: it or its images lie inside {data_dir / name}/, which registering {name!r} "
                        "replaces", hint=hint)
    return None


def _register_in_place(name: str, file_name: str, data_dir: Path, report: ValidationReport, *,
                       force: bool) -> RegisterResult:
    """Add the entry for a file already in DATA; the file itself is never touched."""
    entry = sharegpt_entry(file_name)
    assert report.sample_file is not None
    samples = report.sample_file.samples
    images = sum(len(s.data.get("images") or []) for s in samples if isinstance(s.data, dict))
    status: Status = "added"
    with info_lock(data_dir):
        info = read_info(data_dir)
        if name in info:
            if info[name] == entry:
                status = "unchanged"
            elif not force:
                raise AlreadyRegisteredError(
                    f"{name!r} is already registered in {data_dir / DATASET_INFO} with different content",
                    hint="pass --force to replace it")
            else:
                status = "replaced"
        if status != "unchanged":
            info[name] = entry
            write_info(data_dir, info)
    return RegisterResult(name, status, data_dir, data_dir / file_name, len(samples), images, report,
                          in_place=True)


def list_datasets(data_dir: Path) -> list[DatasetListing]:
    """The datasets registered in DATA/dataset_info.json; a data dir that does not exist is an error
    (a mistyped --data-dir would otherwise read as "nothing registered")."""
    if not Path(data_dir).is_dir():
        raise DataError(f"{data_dir}: no such data dir",
                        hint="pass the --data-dir that holds dataset_info.json (default ./data)")
    listing = []
    for entry in entries(data_dir):
        if entry.file_name is None:
            listing.append(DatasetListing(entry.name, entry.source, None, None))
            continue
        samples: int | None = None
        images: int | None = None
        path = data_dir / entry.file_name
        problem = entry.outside()
        if problem:
            listing.append(DatasetListing(entry.name, entry.file_name, None, None, f"{problem}; not read"))
            continue
        if path.is_file() and path.suffix.lower() in {".json", ".jsonl"}:
            with contextlib.suppress(DataError):
                rows = read_samples(path, entry.layout()).samples
                samples = len(rows)
                images = sum(len(r.data.get("images") or []) for r in rows if isinstance(r.data, dict))
        listing.append(DatasetListing(entry.name, entry.file_name, samples, images))
    return listing


@dataclass(frozen=True)
class RemoveResult:
    name: str
    purged: list[Path]
    kept: list[Path]  # files the entry used that --purge did not delete (not staged by glmocr-lf)


def remove_dataset(name: str, data_dir: Path, *, purge: bool = False) -> RemoveResult:
    info_path = data_dir / DATASET_INFO
    if not info_path.exists():
        raise DataError(f"{info_path}: no such file; nothing is registered there")
    with info_lock(data_dir):
        info = read_info(data_dir)
        if name not in info:
            raise unknown_name(name, info, info_path)
        entry = info.pop(name)
        write_info(data_dir, info)
        purged: list[Path] = []
        kept: list[Path] = []
        file_name = DatasetEntry(name, entry).file_name if isinstance(entry, dict) else None
        if purge and isinstance(file_name, str):
            if file_name == f"{name}.json" and _stageable(name):
                for path in (data_dir / file_name, data_dir / name):
                    if path.exists() or path.is_symlink():
                        remove_path(path)
                        purged.append(path)
            else:
                kept.append(data_dir / file_name)
    return RemoveResult(name, purged, kept)

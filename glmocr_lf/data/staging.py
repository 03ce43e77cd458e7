"""A registration's samples and images are one unit, switched by one rename.

Images are staged into a versioned folder `DATA/NAME/vDIGEST/` (the digest of what is staged) and
`DATA/NAME.json` points into it; writing NAME.json atomically is the switch. Before it, the old
NAME.json still points into the old version, whole; after it, the new one is complete. Any error
rolls back; what a killed run leaves (`.NAME.staging-*`, `.NAME.json.*.tmp`, versions no
NAME.json points into) is cleaned by the next registration of NAME, under the registry's lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data.report import ValidationReport
from glmocr_lf.runtime.constants import LinkMode
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    pause_point,
    remove_path,
    write_error,
)

VERSION_RE = re.compile(r"^v[0-9a-f]{12}(?:-[0-9]+)?$")


@dataclass(frozen=True)
class Plan:
    """What registering NAME stages: the samples (image paths inside the media dir as
    `(True, rel)`, others as `(False, absolute)`), the files they need and the digest of both."""

    name: str
    rows: list[tuple[dict[str, Any], list[tuple[bool, str]]]]
    files: list[tuple[str, str]]  # (source absolute path, destination relative to the version folder)
    link: LinkMode
    digest: str

    @property
    def samples(self) -> int:
        return len(self.rows)

    @property
    def images(self) -> int:
        return sum(len(paths) for _, paths in self.rows)

    def text(self, version: str | None) -> str:
        """NAME.json with image paths pointing into `version` (`NAME/VERSION/rel`)."""
        lines = []
        for sample, paths in self.rows:
            staged = dict(sample)
            # always present: LLaMA-Factory indexes the column on every row
            staged["images"] = [f"{self.name}/{version}/{p}" if inside else p for inside, p in paths]
            lines.append(json.dumps(staged, ensure_ascii=False))
        return "[\n" + ",\n".join(lines) + "\n]\n"

    def links(self) -> list[tuple[str, str]]:
        """What to create: per file for hardlink/copy; for symlink one link per top-level entry
        (a folder link serves every image below it, so 100k images stage in milliseconds)."""
        if self.link != "symlink":
            return self.files
        top: dict[str, str] = {}
        for source, rel in self.files:
            first, sep, rest = rel.partition("/")
            top.setdefault(first, source[: len(source) - len(rest) - 1] if sep else source)
        return sorted(((source, rel) for rel, source in top.items()), key=lambda item: item[1])


def make_plan(name: str, report: ValidationReport, root: Path, link: LinkMode) -> Plan:
    """The staging of the samples just validated (images relative to `root`, the media dir)."""
    assert report.sample_file is not None
    root_abs = os.path.normpath(os.path.abspath(root))
    prefix = root_abs.rstrip(os.sep) + os.sep
    files: dict[str, str] = {}
    rows = []
    for raw in report.sample_file.samples:
        paths = []
        for image in raw.data.get("images") or []:
            full = os.path.normpath(os.path.join(root_abs, image))
            if full.startswith(prefix):
                rel = full[len(prefix):].replace(os.sep, "/")
                files[full] = rel
                paths.append((True, rel))
            else:  # --allow-outside: LLaMA-Factory passes absolute paths through unchanged
                paths.append((False, full))
        rows.append((raw.data, paths))
    listed = sorted(files.items(), key=lambda item: item[1])
    digest = hashlib.sha256(json.dumps([link, listed, rows], ensure_ascii=False).encode("utf-8",
                                                                                      "surrogatepass"))
    return Plan(name, rows, listed, link, digest.hexdigest())


def _versions(folder: Path, plan: Plan) -> list[str]:
    """The version folders of this plan's digest already in NAME/ (a re-staging adds `-N`)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    base = f"v{plan.digest[:12]}"
    return sorted(n for n in names if n == base or (n.startswith(base + "-") and VERSION_RE.match(n)))


def is_staged(data_dir: Path, plan: Plan) -> bool:
    """Whether DATA/NAME.json and DATA/NAME/ already hold exactly this plan, every image there."""
    try:
        text = (data_dir / f"{plan.name}.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not plan.files:
        return text == plan.text(None)
    folder = data_dir / plan.name
    return any(text == plan.text(v) and _intact(folder / v, plan) for v in _versions(folder, plan))


def _intact(target: Path, plan: Plan) -> bool:
    for source, rel in plan.links():
        dest = target / rel
        if plan.link == "symlink" and (not dest.is_symlink() or os.readlink(dest) != source):
            return False
    for source, rel in plan.files:  # any mode: every image there, same size
        dest = target / rel
        if not dest.is_file() or dest.stat().st_size != os.stat(source).st_size:
            return False
    return True


def clean_leftovers(data_dir: Path, name: str) -> None:
    """Remove what a killed registration of NAME left: staging folders, temporary files and
    versions NAME.json does not point into. Call it under the registry's lock."""
    for leftover in data_dir.glob(f".{name}.staging-*"):
        remove_path(leftover)
    folder = data_dir / name
    for old in sorted(data_dir.glob(f".{name}.old-*")):  # an earlier version's swap, killed half way
        if not (folder.exists() or folder.is_symlink()):
            os.replace(old, folder)  # NAME.json still points into it: put it back
        else:
            remove_path(old)
    for leftover in data_dir.glob(f".{name}.json.*.tmp"):
        remove_path(leftover)
    if not folder.is_dir() or folder.is_symlink():
        return
    try:
        text = (data_dir / f"{name}.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    for entry in os.listdir(folder):
        if VERSION_RE.match(entry) and f'"{name}/{entry}/' not in text:
            remove_path(folder / entry)
    if not text and not os.listdir(folder):
        folder.rmdir()


def _stage_images(plan: Plan, target: Path) -> None:
    made: set[str] = set()
    for source, rel in plan.links():
        dest = os.path.join(target, rel)
        parent = os.path.dirname(dest)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if plan.link == "symlink":
            os.symlink(source, dest)
        elif plan.link == "hardlink":
            try:
                os.link(source, dest)
            except OSError as err:
                raise DataError(f"{source}: cannot hardlink into {target}: {err.strerror or err}",
                                hint="hardlinks need the same filesystem; use --link symlink or copy") from None
        else:
            shutil.copyfile(source, dest)


def swap_in(data_dir: Path, plan: Plan, commit_entry: Callable[[], None]) -> None:
    """Stage the images into a new version folder, switch NAME.json to it, then `commit_entry`
    (write dataset_info.json); any error before the end puts everything back as it was."""
    name = plan.name
    folder, dataset_file = data_dir / name, data_dir / f"{name}.json"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DataError(f"{folder}: is not a folder; registering {name!r} stages its images in a folder there",
                        hint="move it away, or pick another name")
    old_text = dataset_file.read_bytes() if dataset_file.is_file() else None
    staging = data_dir / f".{name}.staging-{os.getpid()}"
    version = None
    made_folder = committed = False
    try:
        remove_path(staging)
        if plan.files:
            base, copies = f"v{plan.digest[:12]}", 0
            version = base
            while (folder / version).exists() or (folder / version).is_symlink():  # a damaged copy
                copies += 1
                version = f"{base}-{copies}"
            staging.mkdir()
            _stage_images(plan, staging)
            if not folder.is_dir():
                folder.mkdir()
                made_folder = True
            os.replace(staging, folder / version)
        pause_point("register-swap")
        atomic_write_text(dataset_file, plan.text(version))
        committed = True
        pause_point("register-entry")
        commit_entry()
    except BaseException as err:
        _roll_back(staging, folder, version, made_folder)
        if committed:
            _restore(dataset_file, old_text)
        if isinstance(err, OSError):
            raise write_error(folder, err) from None
        raise
    for entry in os.listdir(folder) if folder.is_dir() else []:  # the old version, or an old layout
        if entry != version:
            remove_path(folder / entry)
    if version is None and folder.is_dir():
        folder.rmdir()


def _restore(dataset_file: Path, old_text: bytes | None) -> None:
    """Switch NAME.json back to what it was (None: there was none)."""
    if old_text is None:
        dataset_file.unlink(missing_ok=True)
    else:
        atomic_write_bytes(dataset_file, old_text)


def _roll_back(staging: Path, folder: Path, version: str | None, made_folder: bool) -> None:
    """Remove the staging and the new version folder of a swap cut short."""
    remove_path(staging)
    if version is not None and (folder / version).exists():
        remove_path(folder / version)
    if made_folder and folder.is_dir() and not os.listdir(folder):
        folder.rmdir()

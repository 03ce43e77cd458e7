"""`glmocr-lf init`: a project folder from the packaged `templates/`.

Every template file is copied as is, except the configs, which are loaded and rendered again for
the installed llamafactory/transformers (so the version rules apply). Conservative by design: a
non-empty folder needs `force`, and even then only the scaffold's own files are written; nothing is
deleted or overwritten: a scaffold file that exists with other content is kept and init's version
goes beside it as `FILE.new`, and an existing `data/dataset_info.json` (the user's registrations) is
kept.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.config import load_config, render_config
from glmocr_lf.runtime import resources
from glmocr_lf.runtime.constants import DATA_DIR, DATASET_INFO
from glmocr_lf.runtime.fsutil import atomic_write_bytes, require_empty_dir
from glmocr_lf.runtime.launch import whitespace_note
from glmocr_lf.runtime.versions import Stack

EXAMPLE_DATASET = "cosyn_chemical"
EXAMPLE_VAL_DATASET = f"{EXAMPLE_DATASET}_val"  # the Makefile's EVAL_DATASET default: $(DATASET)_val
EXAMPLE_VAL_RATIO = 0.2  # 2 of the 10 images held out
EXAMPLE_SEED = 0
CONFIGS_DIR = "configs"
DATASET_INFO_PATH = f"{DATA_DIR}/{DATASET_INFO}"


@dataclass(frozen=True)
class ScaffoldResult:
    root: Path
    written: list[str]  # paths relative to root, posix, in natural order
    kept: list[str] = field(default_factory=list)  # scaffold paths that existed and were left alone
    set_aside: list[str] = field(default_factory=list)  # kept because they differ; init's is at PATH.new
    notes: list[str] = field(default_factory=list)  # how the configs were adapted to the installed versions
    example: dict[str, int] = field(default_factory=dict)  # registered example dataset -> samples


def natural_key(path: str) -> list[tuple[int, str]]:
    """`2.png` before `10.png`."""
    return [(int(part), "") if part.isdigit() else (0, part) for part in re.split(r"(\d+)", path)]


def template_files(root: Path | None = None) -> list[str]:
    root = root or resources.templates_dir()
    return sorted((p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()), key=natural_key)


def render_templates(stack: Stack, root: Path | None = None) -> tuple[dict[str, bytes], list[str]]:
    """What init writes, path by path, and the notes from re-rendering the configs."""
    root = root or resources.templates_dir()
    files: dict[str, bytes] = {}
    notes: list[str] = []
    for rel in template_files(root):
        source = root / rel
        if rel.startswith(f"{CONFIGS_DIR}/") and source.suffix == ".yaml":
            text, config_notes = render_config(load_config(source), stack)
            files[rel] = text.encode("utf-8")
            notes.extend(f"{rel}: {note}" for note in config_notes)
        else:
            files[rel] = source.read_bytes()
    return files, notes


def check_target(target: Path, *, force: bool) -> None:
    require_empty_dir(target, force=force, hint=FORCE_HINT)


FORCE_HINT = ("pass --force to write the scaffold's files into it (a file you changed is kept and init's "
              "version written beside it as FILE.new; nothing is deleted)")
NEW_SUFFIX = ".new"


def scaffold(target: Path, *, example: bool = False, force: bool = False,
             stack: Stack | None = None) -> ScaffoldResult:
    check_target(target, force=force)
    files, notes = render_templates(stack or Stack.detect())
    spaced = whitespace_note(target)
    if spaced:
        notes.append(spaced)
    written: list[str] = []
    kept: list[str] = []
    set_aside: list[str] = []
    for rel, data in files.items():
        path = target / rel
        if rel == DATASET_INFO_PATH and path.exists():
            kept.append(rel)
            continue
        if _differs(path, data):
            set_aside.append(rel)
            rel += NEW_SUFFIX
            path = target / rel
        atomic_write_bytes(path, data)
        written.append(rel)
    registered: dict[str, int] = {}
    if example:
        registered, example_kept = _register_example(target / DATA_DIR)
        kept.extend(example_kept)
        for name in registered:
            staged = target / DATA_DIR / name
            written.append(f"{DATA_DIR}/{name}.json")
            written.extend(p.relative_to(target).as_posix() for p in staged.rglob("*") if p.is_file())
        if registered and DATASET_INFO_PATH in kept:
            kept.remove(DATASET_INFO_PATH)
            written.append(DATASET_INFO_PATH)
    return ScaffoldResult(target, sorted(set(written), key=natural_key), kept=kept, set_aside=set_aside,
                          notes=notes, example=registered)


def _differs(path: Path, data: bytes) -> bool:
    """An existing file (or anything else) at `path` whose content is not `data`."""
    if not (path.exists() or path.is_symlink()):
        return False
    try:
        return not path.is_file() or path.read_bytes() != data
    except OSError:
        return True


def _register_example(data_dir: Path) -> tuple[dict[str, int], list[str]]:
    """The bundled sample split by image into a training set and a held-out one for `make eval`,
    both validated and staged as real copies (links into site-packages would break when glmocr-lf
    is upgraded). A name already registered (or staged) with other content is kept as it is."""
    from glmocr_lf.data.convert import split_samples
    from glmocr_lf.data.registry import AlreadyRegisteredError, register_dataset
    from glmocr_lf.data.report import CheckOptions
    from glmocr_lf.data.samples import read_samples

    sample_json, _images = resources.sample_dataset()
    samples = [raw.data for raw in read_samples(sample_json).samples]
    train, val = split_samples([(sample["images"][0], sample) for sample in samples],
                               EXAMPLE_VAL_RATIO, EXAMPLE_SEED)
    # the split files name the images relative to the bundled sample's folder, hence media_dir
    options = CheckOptions(media_dir=sample_json.parent)
    registered: dict[str, int] = {}
    kept: list[str] = []
    with tempfile.TemporaryDirectory(prefix="glmocr-lf-example-") as tmp:
        for name, split in ((EXAMPLE_DATASET, train), (EXAMPLE_VAL_DATASET, val)):
            split_json = Path(tmp) / f"{name}.json"
            split_json.write_text(json.dumps(split, ensure_ascii=False), encoding="utf-8")
            try:
                result = register_dataset(name, split_json, data_dir, options=options, link="copy")
            except AlreadyRegisteredError:
                kept.append(f"{DATA_DIR}/{name}.json")
                continue
            registered[name] = result.samples
    return registered, kept

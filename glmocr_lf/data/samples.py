"""Read a ShareGPT dataset file (a JSON list or JSON Lines) and say exactly where it is broken.

File-level mistakes (missing file, a directory, not UTF-8, invalid JSON, not a list) raise
`DataError` with `FILE[:LINE[:COLUMN]]: message`; per-sample checks live in `validate.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.data import jsonl
from glmocr_lf.data.info import Layout
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import decode_utf8, pending_set, read_bytes

FileFormat = Literal["json", "jsonl"]


@dataclass(frozen=True)
class RawSample:
    """One parsed sample: `index` is 0-based; `line` is 1-based (JSONL only)."""

    index: int
    line: int | None
    data: Any


@dataclass(frozen=True)
class SampleFile:
    path: Path
    format: FileFormat
    samples: list[RawSample]
    layout: Layout = field(default_factory=Layout)


def _guess_format(path: Path, text: str) -> FileFormat:
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    first = text.lstrip()[:1]
    if first == "{":
        # a .json file holding one object a line (the `datasets` json loader reads both shapes)
        try:
            json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return "jsonl"
        raise DataError(f"{path}: top level is an object; expected a list of samples (or JSON Lines)")
    return "json"


def read_samples(path: Path, layout: Layout | None = None) -> SampleFile:
    """Parse every sample, in our layout (`layout`: how a registered entry names the keys).

    The first syntax error stops with its line and column."""
    path = Path(path)
    layout = layout or Layout()
    journal = pending_set(path)
    if journal is not None:
        raise DataError(f"{path}: a `data convert` was stopped while it replaced this file and the ones "
                        f"written with it ({journal.name} names them): they may not belong together",
                        hint="run the same `glmocr-lf data convert` again: it completes the set first")
    text = decode_utf8(path, read_bytes(path))
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a JSON list of samples or JSON Lines")
    fmt = _guess_format(path, text)
    samples: list[RawSample] = []
    if fmt == "json":
        data = jsonl.load_document(path, text)
        if not isinstance(data, list):
            raise DataError(f"{path}: top level is {json_type(data)}; expected a list of samples")
        samples = [RawSample(i, None, layout.canonical(item)) for i, item in enumerate(data)]
    else:
        samples = [RawSample(i, n, layout.canonical(item)) for i, (n, item) in enumerate(jsonl.parse(path, text))]
    if not samples:
        raise DataError(f"{path}: no samples")
    return SampleFile(path, fmt, samples, layout)


def json_type(value: Any) -> str:
    """`a string`, `an object`... for messages like `expected a list, got an object`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def unencodable(sample: Any) -> list[tuple[str, str]]:
    """Strings (keys included) that cannot be written as UTF-8: a lone surrogate such as \\ud800,
    which JSON escapes can spell but no tokenizer or file can hold. A loop, not recursion: a
    sample may nest as deep as the JSON parser allows."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("", sample)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                found.append((where, f"lone surrogate \\u{ord(value[err.start]):04x} at character {err.start}; "
                                     "not valid Unicode text (fix the escape in the file)"))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")  # printable
                stack.append((f"{where}.{name}" if where else name, item))
                stack.append((where, key))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return sorted(found)

"""Read a ShareGPT dataset file (a JSON list or JSON Lines) and say exactly where it is broken.

File-level mistakes (missing file, a directory, not UTF-8, invalid JSON, not a list) raise
`DataError` with `FILE[:LINE[:COLUMN]]: message`; per-sample checks live in `validate.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.errors import DataError

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


def read_bytes(path: Path, what: str = "dataset file") -> bytes:
    """The file's bytes, or a one-line DataError naming what is wrong with the path."""
    try:
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except PermissionError:
        raise DataError(f"{path}: cannot read: permission denied") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None


def decode_utf8(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{raw[start]:02x}); save the file as UTF-8"
        ) from None


def _guess_format(path: Path, text: str) -> FileFormat:
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    first = text.lstrip()[:1]
    if first == "{":
        # a .json file holding one object a line (the `datasets` json loader reads both shapes)
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return "jsonl"
        raise DataError(f"{path}: top level is an object; expected a list of samples (or JSON Lines)")
    return "json"


def read_samples(path: Path) -> SampleFile:
    """Parse every sample; the first syntax error stops with its line and column."""
    path = Path(path)
    text = decode_utf8(path, read_bytes(path))
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a JSON list of samples or JSON Lines")
    fmt = _guess_format(path, text)
    samples: list[RawSample] = []
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: top level is {json_type(data)}; expected a list of samples")
        samples = [RawSample(i, None, item) for i, item in enumerate(data)]
    else:
        samples = _read_jsonl_fast(text) or _read_jsonl(path, text)
    if not samples:
        raise DataError(f"{path}: no samples")
    return SampleFile(path, fmt, samples)


def _lines(text: str) -> list[str]:
    # not str.splitlines(): JSON strings may hold a raw U+2028, which is not a JSONL line break
    return text.replace("\r\n", "\n").split("\n")


def _read_jsonl_fast(text: str) -> list[RawSample] | None:
    """One C-speed parse of all lines as an array; None (use the line by line reader) on any doubt."""
    numbered = [(n, line) for n, line in enumerate(_lines(text), start=1) if line.strip()]
    try:
        items = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except json.JSONDecodeError:
        return None
    if len(items) != len(numbered):  # a line like `1, 2` holds two values: let the slow path say so
        return None
    return [RawSample(i, n, item) for i, ((n, _), item) in enumerate(zip(numbered, items, strict=True))]


def _read_jsonl(path: Path, text: str) -> list[RawSample]:
    samples: list[RawSample] = []
    decode = json.JSONDecoder().decode
    for lineno, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            item = decode(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}:{err.colno}: invalid JSON: {err.msg}") from None
        samples.append(RawSample(len(samples), lineno, item))
    return samples


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


"""The one JSON Lines reader and writer (datasets, predictions, LLaMA-Factory's trainer log).

A line ends at "\\n" only: U+2028, U+2029 and the other characters `str.splitlines()` breaks on
are ordinary characters inside JSON strings. Records are written with `ensure_ascii=False`, one
`json.dumps` a line, so every reader here reads back exactly what a writer here wrote.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import (
    atomic_write_text,
    decode_utf8,
    ensure_dir,
    read_bytes,
    write_error,
)

Numbered = list[tuple[int, Any]]  # (1-based line number, record)


def dumps(record: Any) -> str:
    """One line of JSON Lines, "\\n" included (control characters are escaped by json)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def load_document(path: Path, text: str, what: str = "JSON") -> Any:
    """One JSON document from a user's file: every way it cannot be read (syntax, nesting deeper
    than the parser goes, an integer of thousands of digits) is one DataError naming the place."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: invalid {what}: {err.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: invalid {what}: nested too deep to read (arrays or objects inside "
                        "each other hundreds of levels deep)") from None
    except ValueError as err:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise DataError(f"{path}: invalid {what}: {_number_problem(err)}") from None


def _number_problem(err: ValueError) -> str:
    limit, has = re.search(r"\((\d+) digits\)", str(err)), re.search(r"has (\d+) digits", str(err))
    if limit and has:
        return f"a number of {has.group(1)} digits (Python reads at most {limit.group(1)})"
    return str(err)


def parse(path: Path, text: str) -> Numbered:
    """Every record of a JSON Lines text; the first broken line raises `FILE:LINE:COLUMN: ...`."""
    return _parse_fast(text) or _parse_each(path, text)


def _parse_fast(text: str) -> Numbered | None:
    """One C-speed parse of all lines as an array; None (parse line by line) on any doubt."""
    numbered = [(n, line) for n, line in enumerate(split_lines(text), start=1) if line.strip()]
    try:
        items = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    if len(items) != len(numbered):  # a line like `1, 2` holds two values: let the slow path say so
        return None
    return [(n, item) for (n, _), item in zip(numbered, items, strict=True)]


def _parse_each(path: Path, text: str) -> Numbered:
    decode = json.JSONDecoder().decode
    records: Numbered = []
    for lineno, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, decode(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}:{err.colno}: invalid JSON: {err.msg}") from None
        except RecursionError:
            raise DataError(f"{path}:{lineno}: invalid JSON: nested too deep to read") from None
        except ValueError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON: {_number_problem(err)}") from None
    return records


def read(path: Path, what: str = "JSON Lines file", *, complete_lines_only: bool = False) -> Numbered:
    """Read and parse a whole file (UTF-8, a BOM allowed); unreadable files raise DataError.
    `complete_lines_only`: a last line without its "\\n" (being written, or cut off by a crash) is
    not read."""
    path = Path(path)
    raw = read_bytes(path, what)
    if complete_lines_only:
        raw = raw[:raw.rfind(b"\n") + 1]
    return parse(path, decode_utf8(path, raw))


def write(path: Path, records: Iterable[Any]) -> None:
    """Replace `path` atomically with one line per record."""
    atomic_write_text(path, "".join(dumps(r) for r in records))


class Appender:
    """Append records to a file as they are made: each is flushed and synced before the next,
    so an interrupted job keeps every record it finished and never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None

    def __enter__(self) -> Appender:
        ensure_dir(self.path.parent)
        try:
            _drop_partial_tail(self.path)
            self._handle = self.path.open("a", encoding="utf-8", newline="\n")
        except OSError as err:
            raise write_error(self.path, err) from None
        return self

    def add(self, record: Any) -> None:
        assert self._handle is not None, "use Appender as a context manager"
        try:
            self._handle.write(dumps(record))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:  # a full disk: the records before this one are whole
            raise write_error(self.path, err) from None

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _drop_partial_tail(path: Path) -> None:
    """A record cut short by a crash has no "\\n": remove it so appending starts on a fresh line."""
    try:
        with path.open("rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                handle.truncate(end)
    except FileNotFoundError:
        pass


class Follower:
    """Read the complete lines a running process has appended since the last poll (a line without
    its "\\n" is still being written). Lines that are not JSON objects are skipped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        new = []
        for raw in data[: end + 1].split(b"\n"):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                new.append(entry)
        return new

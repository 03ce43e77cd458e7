"""The one reader and writer of LLaMA-Factory's `dataset_info.json`, and of what an entry means.

An entry's `columns` and `tags` decide how LLaMA-Factory reads a ShareGPT file; `Layout` carries
them (with LLaMA-Factory's own defaults for what the entry leaves out, data/parser.py), so every
consumer reads a registered dataset the way training will. Writes happen under a file lock and
replace the file atomically; a file that is not valid JSON is reported and never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data.jsonl import load_document
from glmocr_lf.runtime.constants import DATASET_INFO
from glmocr_lf.runtime.errors import DataError, nearest
from glmocr_lf.runtime.fsutil import atomic_write_text, decode_utf8, file_lock, read_bytes

LOCK_NAME = ".dataset_info.json.lock"
LOCK_TIMEOUT_S = 120
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


@dataclass(frozen=True)
class Layout:
    """Where a record keeps its messages and images, and what the message keys and roles are called.

    The defaults are ours (`messages` / `role` / `content`), what `data register` writes;
    `Layout.of_entry` fills what an entry leaves out with LLaMA-Factory's defaults."""

    messages: str = "messages"
    images: str | None = "images"
    role: str = "role"
    content: str = "content"
    user: str = "user"
    assistant: str = "assistant"
    system: str = "system"

    @classmethod
    def of_entry(cls, entry: dict[str, Any]) -> Layout:
        columns = entry.get("columns") or {}
        tags = entry.get("tags") or {}
        if not isinstance(columns, dict) or not isinstance(tags, dict):
            raise DataError("columns and tags must be objects")
        return cls(messages=str(columns.get("messages", "conversations")),
                   images=str(columns["images"]) if columns.get("images") else None,
                   role=str(tags.get("role_tag", "from")), content=str(tags.get("content_tag", "value")),
                   user=str(tags.get("user_tag", "human")), assistant=str(tags.get("assistant_tag", "gpt")),
                   system=str(tags.get("system_tag", "system")))

    @property
    def is_ours(self) -> bool:
        return self == Layout()

    def canonical(self, record: Any) -> Any:
        """The record in our layout (keys missing in the record stay missing, unknown roles stay)."""
        if self.is_ours or not isinstance(record, dict):
            return record
        out = {k: v for k, v in record.items() if k not in ("messages", "images", self.messages)}
        if self.images is not None and self.images in record:
            out["images"] = record[self.images]
        if self.messages in record:
            messages = record[self.messages]
            roles = {self.user: "user", self.assistant: "assistant", self.system: "system"}
            if isinstance(messages, list):
                messages = [self._message(m, roles) for m in messages]
            out["messages"] = messages
        return out

    def _message(self, message: Any, roles: dict[str, str]) -> Any:
        if not isinstance(message, dict):
            return message
        out: dict[str, Any] = {}
        if self.role in message:
            role = message[self.role]
            out["role"] = roles.get(role, role) if isinstance(role, str) else role
        if self.content in message:
            out["content"] = message[self.content]
        return out

    def field(self, where: str) -> str:
        """Our field name (`messages[0].role`) as the file spells it (`conversations[0].from`)."""
        if self.is_ours:
            return where
        head, dot, rest = where.partition(".")
        if head.startswith("messages"):
            head = self.messages + head[len("messages"):]
        elif head.startswith("images"):
            head = (self.images or "images (no images column in the entry)") + head[len("images"):]
        rest = {"role": self.role, "content": self.content}.get(rest, rest)
        return head + dot + rest


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    raw: dict[str, Any]

    @property
    def file_name(self) -> str | None:
        value = self.raw.get("file_name")
        return value if isinstance(value, str) else None

    @property
    def source(self) -> str:
        """The file name, or the hub/script source of a remote dataset."""
        if self.file_name:
            return self.file_name
        return next((str(self.raw[k]) for k in HUB_KEYS if k in self.raw), "?")

    @property
    def formatting(self) -> str:
        return str(self.raw.get("formatting", "alpaca"))

    def layout(self) -> Layout:
        try:
            return Layout.of_entry(self.raw)
        except DataError as err:
            raise DataError(f"dataset {self.name}: {err.message}") from None

    def outside(self) -> str | None:
        """Why file_name is not a file in the data dir (`../..`, `/etc/passwd`), or None: we
        read only what the data dir holds."""
        name = self.file_name
        if name is None:
            return None
        if "\x00" in name:
            return "file_name contains a NUL byte"
        if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == "..":
            return f"file_name {name!r} leaves the data dir"
        return None

    def problem(self) -> str | None:
        """Why LLaMA-Factory cannot load this entry at all, or None."""
        if not self.file_name and not any(k in self.raw for k in HUB_KEYS):
            return "has neither file_name nor a hub/script source (" + ", ".join(HUB_KEYS) + ")"
        return None


def read_info(data_dir: Path) -> dict[str, Any]:
    """The entries of `DATA/dataset_info.json`; {} when the file does not exist or is empty."""
    path = Path(data_dir) / DATASET_INFO
    if not path.exists():
        return {}
    text = decode_utf8(path, read_bytes(path, "JSON file"))
    if not text.strip():
        return {}
    try:
        info = load_document(path, text)
    except DataError as err:
        raise DataError(err.message, hint="fix or remove it by hand; glmocr-lf never overwrites a file "
                                          "it cannot read") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: top level must be an object of dataset entries")
    return info


def write_info(data_dir: Path, info: dict[str, Any]) -> None:
    """Replace dataset_info.json atomically; a symlinked one is written through its link (the
    file it points to is replaced, the link stays)."""
    path = Path(data_dir) / DATASET_INFO
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    atomic_write_text(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def info_lock(data_dir: Path) -> Iterator[None]:
    lock = Path(data_dir) / LOCK_NAME
    with file_lock(lock, timeout_s=LOCK_TIMEOUT_S,
                   busy=f"{lock}: still locked after {LOCK_TIMEOUT_S} s by another glmocr-lf"):
        yield


def unknown_name(name: str, info: dict[str, Any], info_path: Path) -> DataError:
    close = nearest(name, info)
    if close:
        hint = f"did you mean {close!r}?"
    elif info:
        hint = "registered: " + ", ".join(sorted(info))
    else:
        hint = f"register it: glmocr-lf data register {name} FILE --data-dir {shlex.quote(str(info_path.parent))}"
    return DataError(f"dataset {name!r} is not registered in {info_path}", hint=hint)


def entries(data_dir: Path) -> list[DatasetEntry]:
    return [DatasetEntry(name, raw if isinstance(raw, dict) else {})
            for name, raw in read_info(data_dir).items()]


def get_entry(data_dir: Path, name: str) -> DatasetEntry:
    """The entry named `name`; a DataError (with a close match) when it is not there."""
    info_path = Path(data_dir) / DATASET_INFO
    if not info_path.exists():
        raise DataError(f"{info_path}: not found, so dataset {name!r} cannot be found",
                        hint=f"register it: glmocr-lf data register {name} FILE --data-dir {shlex.quote(str(data_dir))}")
    info = read_info(data_dir)
    raw = info.get(name)
    if raw is None:
        raise unknown_name(name, info, info_path)
    if not isinstance(raw, dict):
        raise DataError(f"{info_path}: entry {name!r} must be an object")
    return DatasetEntry(name, raw)


class RemoteDatasetError(DataError):
    """A registered dataset that is not a local file (a hub or script source): nothing to read here."""


def local_file(data_dir: Path, name: str) -> tuple[Path, Layout]:
    """The ShareGPT file behind a registered name (joined to `data_dir` as LLaMA-Factory joins it)
    and how LLaMA-Factory reads it. The one place an entry becomes a file: an entry LLaMA-Factory
    cannot load, one that is not a local file (RemoteDatasetError) and one not in sharegpt format
    are refused here."""
    entry = get_entry(data_dir, name)
    info_path = Path(data_dir) / DATASET_INFO
    problem = entry.problem()
    if problem:
        raise DataError(f"{info_path}: dataset {name} {problem}; LLaMA-Factory cannot load it",
                        hint=f"glmocr-lf data register {name} FILE --data-dir {data_dir} --force")
    if entry.file_name is None:
        raise RemoteDatasetError(f"{info_path}: dataset {name} is not a local file ({entry.source})")
    outside = entry.outside()
    if outside:
        raise DataError(f"{info_path}: dataset {name}: {outside}; not read",
                        hint="keep registered files inside the data dir (data register stages them there)")
    if entry.formatting != "sharegpt":
        raise DataError(f"{info_path}: dataset {name}: formatting {entry.formatting!r}; GLM-OCR "
                        "trains on sharegpt data", hint="set \"formatting\": \"sharegpt\" in the entry")
    return Path(data_dir) / entry.file_name, entry.layout()


def is_registered_file(path: Path) -> bool:
    """Whether `path` is a dataset file registered in the dataset_info.json beside it."""
    with contextlib.suppress(DataError):
        return any(e.file_name == Path(path).name for e in entries(Path(path).parent))
    return False

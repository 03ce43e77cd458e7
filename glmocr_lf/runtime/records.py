"""The records glmocr-lf writes beside what it made, read and written here only: train's
glmocr_lf_run.json (in the run's output_dir), export's glmocr_lf_export.json (in the merged model)
and eval's eval_run.json (in the eval's --out). A later step reads what an earlier one recorded
(export and eval read the train record), never the YAML. Writes are atomic; unknown keys of a record
written by another version are ignored, missing ones take their defaults.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from glmocr_lf import __version__
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.fsutil import atomic_write_text

TRAIN_RECORD = "glmocr_lf_run.json"
EXPORT_RECORD = "glmocr_lf_export.json"
EVAL_RECORD = "eval_run.json"

Status = Literal["running", "finished", "failed", "interrupted"]


def now() -> str:
    """The time a record says something happened: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Record(BaseModel):
    """What every record says: which glmocr-lf, stack and Python made it, and how it ended."""

    model_config = ConfigDict(extra="ignore")

    # stamped by the writer, so every record says who wrote it
    glmocr_lf: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    python: str | None = None
    status: Status = "finished"
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file this record was read from (None for one not read from a file)."""
        return self._path


class LaunchedRecord(Record):
    """A record of a llamafactory-cli run: the exact command and environment overlay."""

    command: str = ""
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class TrainRecord(LaunchedRecord):
    yaml: str | None = None  # the YAML llamafactory-cli read
    model_name_or_path: str | None = None
    finetuning_type: str | None = None
    image_max_pixels: int | None = None
    image_min_pixels: int | None = None
    template: str | None = None
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None  # ours: 128 + signal for an interrupted run
    child_exit_code: int | None = None  # llamafactory-cli's own (0 for a run that ignored Ctrl-C)
    signal: str | None = None  # the signal that interrupted it
    escalated: list[str] = Field(default_factory=list)  # sent after it when the child went on: SIGTERM, SIGKILL
    summary: dict[str, Any] | None = None  # train.run.TrainSummary


class ExportRecord(LaunchedRecord):
    exported: str | None = None
    base: str | None = None
    adapter: str | None = None  # the LoRA run or checkpoint merged
    adapter_sha256: str | None = None  # of its weights when merged: a changed adapter makes the merge stale
    image_max_pixels: int | None = None
    image_min_pixels: int | None = None
    mtp_tensors_carried: int = 0


class EvalRecord(Record):
    """An `eval run`: what it scored, with which settings, and how far it got."""

    model: str = ""
    adapter: str | None = None
    dataset: str = ""
    out_dir: str = ""
    data_dir: str = ""
    max_samples: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # evaluation.settings.ScoreSettings
    settings_source: str | None = None  # where the pixel limits came from
    model_sha256: str | None = None  # of the model's files (modelfiles.folder_fingerprint)
    adapter_sha256: str | None = None
    file_hashes: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)  # by folder: not hashed again
    batch_size: int | None = None
    device: str | None = None
    samples: int | None = None
    pid: int | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    error: str | None = None  # why a failed run stopped


R = TypeVar("R", bound=Record)


def _write(path: Path, record: Record) -> Path:
    from glmocr_lf.runtime.versions import STACK, installed

    stamped = record.model_copy(update={"glmocr_lf": __version__, "python": sys.version.split()[0],
                                        "versions": {name: installed(name) for name in STACK}})
    atomic_write_text(path, stamped.model_dump_json(indent=2) + "\n")
    return path


def _read(path: Path, kind: type[R]) -> R | None:
    """The record at `path`; None when there is none; one error naming the file when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise GlmocrLfError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        record = kind.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GlmocrLfError(f"{path}: not a glmocr-lf record: {where + ': ' if where else ''}{first['msg']}",
                            hint="glmocr-lf wrote it; remove it if it was edited by hand") from None
    record._path = path
    return record


def write_train_record(run_dir: Path, record: TrainRecord) -> Path:
    return _write(Path(run_dir) / TRAIN_RECORD, record)


def read_train_record(directory: Path) -> TrainRecord | None:
    """The record of the training run `directory` is (its output_dir) or belongs to (a checkpoint-N
    inside it); None for a folder no glmocr-lf training wrote."""
    directory = Path(directory)
    candidates = [directory] + ([directory.parent] if directory.name.startswith("checkpoint-") else [])
    for candidate in candidates:
        record = _read(candidate / TRAIN_RECORD, TrainRecord)
        if record is not None:
            return record
    return None


def write_export_record(model_dir: Path, record: ExportRecord) -> Path:
    return _write(Path(model_dir) / EXPORT_RECORD, record)


def read_export_record(model_dir: Path) -> ExportRecord | None:
    """The record `export` left in the model folder it wrote; None for any other folder."""
    return _read(Path(model_dir) / EXPORT_RECORD, ExportRecord)


def write_eval_record(out_dir: Path, record: EvalRecord) -> Path:
    return _write(Path(out_dir) / EVAL_RECORD, record)


def read_eval_record(out_dir: Path) -> EvalRecord | None:
    return _read(Path(out_dir) / EVAL_RECORD, EvalRecord)


def eval_record_path(out_dir: Path) -> Path:
    return Path(out_dir) / EVAL_RECORD

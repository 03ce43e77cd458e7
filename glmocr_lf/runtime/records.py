"""The records glmocr-lf writes beside what it made, read and written here only: train's
glmocr_lf_run.json (in the run's output_dir), export's glmocr_lf_export.json (in the merged model),
eval's eval_run.json and page eval's page_run.json (in the eval's --out). A later step reads what an earlier one recorded
(export and eval read the train record), never the YAML. Writes are atomic; unknown keys of a record
written by another version are ignored, missing ones take their defaults.
"""

from __future__ import annotations

import os
import re
import socket
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
PAGE_RUN_RECORD = "page_run.json"

# "died": the record said running, but the process that wrote it is gone (see `_settle`)
Status = Literal["running", "finished", "failed", "interrupted", "died"]
# a run on another host whose heartbeat is older than this is shown as died
HEARTBEAT_STALE_S = 600


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
    # who is writing it while it runs: a dead writer turns "running" into "died" when read
    host: str | None = None
    pid: int | None = None
    pid_started: str | None = None  # the process's start time (Linux /proc), against pid reuse
    heartbeat: str | None = None  # refreshed while running (train: every minute)
    died: str | None = None  # why a record read as "died" is not running (set on reading, never written)
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
    weights_sha256: dict[str, str] | None = None  # each *.safetensors written: other weights, another model
    image_max_pixels: int | None = None
    image_min_pixels: int | None = None
    mtp_tensors_carried: int = 0


class KeyedRecord(Record):
    """Answers keyed by what made them (evaluation.outputs.RunKey): a later run reuses them, continues
    them or regenerates them by these fields, and says how the run got as far as it did."""

    model_sha256: str | None = None  # of the model's files (modelfiles.folder_fingerprint)
    adapter_sha256: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # everything else that changes the answers
    file_hashes: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)  # by folder: not hashed again
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    error: str | None = None  # why a failed run stopped
    signal: str | None = None  # the signal that interrupted it (SIGINT: Ctrl-C; SIGTERM: kill, timeout)


class EvalRecord(KeyedRecord):
    """An `eval run`: what it scored, with which settings (evaluation.settings.ScoreSettings), and how
    far it got."""

    model: str = ""
    adapter: str | None = None
    dataset: str = ""
    out_dir: str = ""
    data_dir: str = ""
    max_samples: int | None = None
    settings_source: str | None = None  # where the pixel limits came from
    batch_size: int | None = None
    device: str | None = None
    samples: int | None = None


class PageRunRecord(KeyedRecord):
    """An `eval run --pages`: its settings (evaluation.pagerun.page_settings: the image limits, decoding,
    layout, margin, max_pages, the ground truth's and page images' sha256), and how far it got."""

    model: str = ""
    adapter: str | None = None
    pages: str = ""  # the OmniDocBench ground truth
    images: str = ""
    out_dir: str = ""
    layout: str = ""  # ground-truth layout, or whole page
    max_pages: int | None = None
    settings_source: str | None = None  # where the pixel limits came from
    batch_size: int | None = None
    device: str | None = None
    regions: int | None = None


R = TypeVar("R", bound=Record)


def _write(path: Path, record: Record) -> Path:
    from glmocr_lf.runtime.versions import STACK, installed

    writer = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _started(os.getpid()),
              "heartbeat": now()} if record.status == "running" else {}
    stamped = record.model_copy(update={"glmocr_lf": __version__, "python": sys.version.split()[0],
                                        "versions": {name: installed(name) for name in STACK}, **writer})
    atomic_write_text(path, stamped.model_dump_json(indent=2, exclude={"died"}) + "\n")
    return path


def _started(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/PID/stat); None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _settle(record: R) -> R:
    """A "running" record whose writer is gone reads as "died", saying why: the process is not
    there (this host), or its heartbeat stopped (another host)."""
    if record.status != "running":
        return record
    why = None
    if record.host == socket.gethostname() and record.pid is not None:
        try:
            os.kill(record.pid, 0)
            gone = record.pid_started is not None and _started(record.pid) not in (None, record.pid_started)
        except ProcessLookupError:
            gone = True
        except PermissionError:  # alive, another user's
            gone = False
        if gone:
            why = f"its process {record.pid} on {record.host} is gone (killed?)"
    elif record.heartbeat is not None:
        age = (datetime.now(UTC) - datetime.fromisoformat(record.heartbeat)).total_seconds()
        if age > HEARTBEAT_STALE_S:
            why = f"no heartbeat from {record.host} for {int(age // 60)} min"
    if why is None:
        return record
    return record.model_copy(update={"status": "died", "died": why})


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
    record = _settle(record)
    record._path = path
    return record


def checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint-N folders of a training run, by step."""
    found = [p for p in Path(run_dir).glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


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


def training_state(directory: Path, purpose: str) -> str | None:
    """Before `purpose` (exporting, evaluating) reads what training wrote in `directory`: an error
    while that training still runs (its weights are being rewritten), a note when it died."""
    record = read_train_record(directory)
    if record is None:
        return None
    if record.status == "running":
        raise GlmocrLfError(f"{record.path}: its training is still running (process {record.pid} on "
                            f"{record.host}); {purpose} now would read weights it is rewriting",
                            hint="wait for it to finish, or stop it first")
    if record.status == "died":
        return (f"{record.path}: the training recorded there died ({record.died}); {purpose} "
                "what it saved last")
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


def write_page_run_record(out_dir: Path, record: PageRunRecord) -> Path:
    return _write(Path(out_dir) / PAGE_RUN_RECORD, record)


def read_page_run_record(out_dir: Path) -> PageRunRecord | None:
    return _read(page_run_record_path(out_dir), PageRunRecord)


def page_run_record_path(out_dir: Path) -> Path:
    return Path(out_dir) / PAGE_RUN_RECORD

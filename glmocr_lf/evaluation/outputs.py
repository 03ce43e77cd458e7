"""An evaluation's output folder: predictions.jsonl, scores.json and eval_run.json are one result
(regions.jsonl, md/, page_scores.json and page_run.json for `eval run --pages`).

What an earlier run left decides what this one does: the same model (by the sha256 of its files),
settings and dataset content reuse finished predictions and continue unfinished ones; anything
changed regenerates, saying what changed. The record is written last, so it says what is there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from glmocr_lf.evaluation.dataset import EvalSample
from glmocr_lf.evaluation.predictions import Prediction, read_predictions
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.modelfiles import FileHashes
from glmocr_lf.runtime.records import KeyedRecord, eval_record_path, read_eval_record

PREDICTIONS_FILE = "predictions.jsonl"
SCORES_FILE = "scores.json"
# the settings that are the inputs' content, said in words when they change
CONTENT_CHANGES = {"dataset_sha256": "the dataset content changed", "pages_sha256": "the ground-truth file changed",
                   "images_sha256": "the page images changed"}

Action = Literal["fresh", "reuse", "resume", "regenerate"]
D = TypeVar("D")  # a finished answer as the folder holds it


@dataclass(frozen=True)
class RunKey:
    """What makes two runs' predictions the same: the model's and adapter's files, the settings."""

    model_sha256: str | None
    adapter_sha256: str | None
    settings: dict[str, Any]
    file_hashes: dict[str, FileHashes] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPlan(Generic[D]):
    action: Action
    reasons: list[str]
    done: dict[str, D] = field(default_factory=dict)  # finished answers kept, by id

    @property
    def line(self) -> str:
        why = "; ".join(self.reasons)
        return {"fresh": "", "reuse": f"reusing: {why}", "resume": f"resuming: {why}",
                "regenerate": f"regenerating: {why}"}[self.action]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"


def key_changes(earlier: KeyedRecord, key: RunKey) -> list[str]:
    """What differs between an earlier run and this one, one phrase each; empty if nothing."""
    if not earlier.settings:
        return [f"{earlier.path} records no settings (an older glmocr-lf wrote it)"]
    changes = []
    for what, then, now in (("model", earlier.model_sha256, key.model_sha256),
                            ("adapter", earlier.adapter_sha256, key.adapter_sha256)):
        if then != now or (now is None and what == "model"):
            changes.append(f"the {what} changed (sha256 of its files {_short(then)} then, {_short(now)} now)")
    for name in dict.fromkeys([*key.settings, *earlier.settings]):
        then, now = earlier.settings.get(name), key.settings.get(name)
        if then != now:
            changes.append(CONTENT_CHANGES.get(name, f"{name} {then} then, {now} now"))
    return changes


def _finished_predictions(path: Path, samples: Sequence[EvalSample]) -> dict[str, Prediction]:
    if not path.is_file():
        return {}
    done = {p.id: p for p in read_predictions(path, finished_only=True)}
    unknown = sorted(set(done) - {s.id for s in samples})
    if unknown:
        raise GlmocrLfError(f"{path} holds ids that are not in this dataset (first: {unknown[0]!r})",
                            hint="pass --force to start over")
    return done


def plan_outputs(out_dir: Path, key: RunKey, samples: Sequence[EvalSample], *, force: bool,
                 resume: bool) -> OutputPlan[Prediction]:
    """What to do with what `out_dir` holds: start, reuse, continue or regenerate, and why."""
    predictions = out_dir / PREDICTIONS_FILE
    return plan_folder(Folder(read_eval_record(out_dir), eval_record_path(out_dir), predictions, "dataset", "samples"),
                       key, [s.id for s in samples], lambda: _finished_predictions(predictions, samples),
                       force=force, resume=resume)


@dataclass(frozen=True)
class Folder:
    """What an earlier run left in an output folder, and how to name it."""

    earlier: KeyedRecord | None
    record_path: Path
    answers: Path  # appended to as answers are made
    inputs: str  # what else the answers are made from, besides the model and settings
    units: str  # what the answers are of: samples, regions


def plan_folder(folder: Folder, key: RunKey, ids: Sequence[str], finished: Callable[[], dict[str, D]], *,
                force: bool, resume: bool) -> OutputPlan[D]:
    """Start, reuse, continue or regenerate, and why; `finished` reads the answers kept (called
    only when the earlier run was made the same way)."""
    earlier, answers = folder.earlier, folder.answers
    if earlier is None and not answers.exists():
        return OutputPlan("fresh", [])
    if earlier is None and not force:
        raise GlmocrLfError(f"{answers}: already exists, and no {folder.record_path.name} says "
                            "what made it", hint="pass --force to start over, or --out another directory")
    if force or earlier is None:
        return OutputPlan("regenerate", ["--force"])
    changes = key_changes(earlier, key)
    if changes and resume:
        raise GlmocrLfError(f"--resume: {folder.record_path} was made with other options: "
                            + "; ".join(changes), hint="resume with the same options, or pass --force to start over")
    if changes:
        return OutputPlan("regenerate", changes)
    done = finished()
    if earlier.status == "finished" and set(done) == set(ids):
        return OutputPlan("reuse", [f"{answers} was made from the same model, settings and {folder.inputs} "
                                    "(--force regenerates)"], done)
    return OutputPlan("resume", [f"{len(done)} of {len(ids)} {folder.units} already in {answers} "
                                 f"(the earlier run {_ended(earlier)})"], done)


def _ended(earlier: KeyedRecord) -> str:
    if earlier.status == "running":  # its writer is gone: nobody holds the folder's lock
        return f"stopped without a word, pid {earlier.pid}: killed?"
    status = f"{earlier.status} by {earlier.signal}" if earlier.signal else str(earlier.status)
    return f"{status}: {earlier.error}" if earlier.error else status

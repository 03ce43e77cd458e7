"""An evaluation's output folder: predictions.jsonl, scores.json and eval_run.json are one result.

What an earlier run left decides what this one does: the same model (by the sha256 of its files),
settings and dataset content reuse finished predictions and continue unfinished ones; anything
changed regenerates, saying what changed. The record is written last, so it says what is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.evaluation.dataset import EvalSample
from glmocr_lf.evaluation.predictions import Prediction, read_predictions
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.modelfiles import FileHashes
from glmocr_lf.runtime.records import EvalRecord, eval_record_path, read_eval_record

PREDICTIONS_FILE = "predictions.jsonl"
SCORES_FILE = "scores.json"

Action = Literal["fresh", "reuse", "resume", "regenerate"]


@dataclass(frozen=True)
class RunKey:
    """What makes two runs' predictions the same: the model's and adapter's files, the settings."""

    model_sha256: str | None
    adapter_sha256: str | None
    settings: dict[str, Any]
    file_hashes: dict[str, FileHashes] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPlan:
    action: Action
    reasons: list[str]
    done: dict[str, Prediction] = field(default_factory=dict)  # finished predictions kept, by id

    @property
    def line(self) -> str:
        why = "; ".join(self.reasons)
        return {"fresh": "", "reuse": f"reusing: {why}", "resume": f"resuming: {why}",
                "regenerate": f"regenerating: {why}"}[self.action]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"


def key_changes(earlier: EvalRecord, key: RunKey) -> list[str]:
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
            changes.append("the dataset content changed" if name == "dataset_sha256"
                           else f"{name} {then} then, {now} now")
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
                 resume: bool) -> OutputPlan:
    """What to do with what `out_dir` holds: start, reuse, continue or regenerate, and why."""
    predictions = out_dir / PREDICTIONS_FILE
    earlier = read_eval_record(out_dir)
    if earlier is None and not predictions.exists():
        return OutputPlan("fresh", [])
    if earlier is None and not force:
        raise GlmocrLfError(f"{predictions}: already exists, and no {eval_record_path(out_dir).name} says "
                            "what made it", hint="pass --force to start over, or --out another directory")
    if force or earlier is None:
        return OutputPlan("regenerate", ["--force"])
    changes = key_changes(earlier, key)
    if changes and resume:
        raise GlmocrLfError(f"--resume: {eval_record_path(out_dir)} was made with other options: "
                            + "; ".join(changes), hint="resume with the same options, or pass --force to start over")
    if changes:
        return OutputPlan("regenerate", changes)
    done = _finished_predictions(predictions, samples)
    if earlier.status == "finished" and set(done) == {s.id for s in samples}:
        return OutputPlan("reuse", [f"{predictions} was made from the same model, settings and dataset "
                                    "(--force regenerates)"], done)
    return OutputPlan("resume", [f"{len(done)} of {len(samples)} samples already in {predictions} "
                                 f"(the earlier run {_ended(earlier)})"], done)


def _ended(earlier: EvalRecord) -> str:
    if earlier.status == "running":  # its writer is gone: nobody holds the folder's lock
        return f"stopped without a word, pid {earlier.pid}: killed?"
    status = f"{earlier.status} by {earlier.signal}" if earlier.signal else str(earlier.status)
    return f"{status}: {earlier.error}" if earlier.error else status

"""`eval run`: check everything, then generate an answer for every sample and score them.

Nothing is written before generation starts: the dataset, the model's files, the output folder and
the model itself (loaded) are checked first, so a run that fails before its first sample leaves no
file and the same command can simply be run again. Predictions are appended as they are made (an
interrupted run keeps them and the next run continues after them); the record says truthfully
whether the run is running, finished, interrupted or failed, and is written last.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from glmocr_lf.data import jsonl
from glmocr_lf.evaluation.dataset import (
    EvalSample,
    dataset_fingerprint,
    load_samples,
    resolve_dataset,
)
from glmocr_lf.evaluation.outputs import (
    PREDICTIONS_FILE,
    SCORES_FILE,
    OutputPlan,
    RunKey,
    plan_outputs,
)
from glmocr_lf.evaluation.predictions import Prediction, detect_task, write_predictions
from glmocr_lf.evaluation.settings import Resolution, resolve_resolution, score_settings
from glmocr_lf.runtime.constants import DATA_DIR
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.fsutil import (
    atomic_write_text,
    check_writable,
    ensure_dir,
    output_lock,
    remove_path,
)
from glmocr_lf.runtime.modelfiles import (
    FileHashes,
    Hasher,
    folder_fingerprint,
    model_folder,
    model_problems,
    stale_merge,
)
from glmocr_lf.runtime.process import Interrupted, stop_of, stop_signals_interrupt
from glmocr_lf.runtime.records import (
    EvalRecord,
    now,
    read_eval_record,
    training_state,
    write_eval_record,
)

if TYPE_CHECKING:
    from glmocr_lf.evaluation.generation import LoadedModel
    from glmocr_lf.evaluation.scoretypes import Scores


@dataclass(frozen=True)
class RunOptions:
    model: str
    dataset: str
    out_dir: Path
    adapter: Path | None = None
    settings_from: Path | None = None  # the model this run is compared with: take its pixel limits
    data_dir: Path = Path(DATA_DIR)
    max_samples: int | None = None
    max_new_tokens: int = 2048
    repetition_penalty: float = 1.0
    image_max_pixels: int | None = None
    image_min_pixels: int | None = None
    batch_size: int = 1
    device: str = "auto"
    force: bool = False
    resume: bool = False
    verbose: bool = False  # transformers' own output while the model loads and generates


@dataclass(frozen=True)
class RunHooks:
    on_start: Callable[[list[str]], object] = lambda lines: None  # the plan, before the model loads
    on_progress: Callable[[int, int], object] = lambda done, total: None  # after each batch


@dataclass(frozen=True)
class RunResult:
    predictions_path: Path
    scores_path: Path
    scores: Scores
    resolution: Resolution
    reused: bool = False


@dataclass
class _Run:
    """One evaluation as planned: its samples, settings, identity and what the folder holds."""

    options: RunOptions
    samples: list[EvalSample]
    resolution: Resolution
    key: RunKey
    outputs: OutputPlan[Prediction]
    hasher: Hasher  # what this command hashed: each file is read once
    record: EvalRecord = field(default_factory=EvalRecord)
    notes: list[str] = field(default_factory=list)  # about the model (its training died)


def default_out_dir(model: str, adapter: Path | None) -> Path:
    """evals/<the model's path, or hub id>[-<the adapter's>]: two models never share a folder."""
    def name(value: str) -> str:
        path = Path(value.rstrip("/")).expanduser()
        if path.is_absolute():
            path = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else Path(path.name)
        return "-".join(part for part in path.parts if part not in (".", "..")) or "model"

    joined = name(model) + ("-" + name(str(adapter)) if adapter is not None else "")
    return Path("evals") / re.sub(r"[^A-Za-z0-9._-]+", "_", joined)


def check_model(model: str, adapter: Path | None, hasher: Hasher) -> list[str]:
    """Refuse a model eval could not load, one whose weights are not what export recorded, and an
    adapter or model a training still writes; the notes for one whose training died. `eval run`
    and `eval run --pages` both ask."""
    stale = stale_merge(Path(model), hasher) if Path(model).is_dir() else None
    if stale:
        merged_from, why = stale
        raise GlmocrLfError(f"{why}: its scores would describe another model",
                            hint=f"merge it again: glmocr-lf export --adapter {shlex.quote(str(merged_from))} "
                                 f"--out {shlex.quote(str(model))} --force"
                            if merged_from else "export it again with --force")
    problems = model_problems(model, consequence="eval could not load it")
    if problems:
        raise GlmocrLfError(f"--model {problems[0]}")
    return [note for d in (adapter, Path(model)) if d is not None and d.is_dir()
            if (note := training_state(d, "evaluating"))]


def model_fingerprints(model: str, adapter: Path | None, known: dict[str, FileHashes],
                       hasher: Hasher) -> tuple[str | None, str | None, dict[str, FileHashes]]:
    """(the model's sha256, the adapter's, each folder's file hashes); None for what is not a folder
    here (a hub id not downloaded yet). `known`: an earlier record's hashes, by folder."""
    hashes: dict[str, FileHashes] = {}
    shas: list[str | None] = []
    for folder in (model_folder(model), adapter):
        if folder is None or not folder.is_dir():
            shas.append(None)
            continue
        sha, hashes[str(folder)] = folder_fingerprint(folder, known.get(str(folder)), hasher)
        shas.append(sha)
    return shas[0], shas[1] if adapter is not None else None, hashes


def run_key(options: RunOptions, samples: Sequence[EvalSample], resolution: Resolution,
            hasher: Hasher) -> RunKey:
    """The model's and adapter's fingerprints (files hashed in an earlier run or by `hasher`, and
    unchanged since, are not hashed again) and the settings."""
    earlier = read_eval_record(options.out_dir) if options.out_dir.is_dir() else None
    known = earlier.file_hashes if earlier is not None else {}
    model_sha, adapter_sha, hashes = model_fingerprints(options.model, options.adapter, known, hasher)
    settings = score_settings(resolution, options.max_new_tokens, options.repetition_penalty, len(samples),
                              dataset_fingerprint(samples, hasher))
    return RunKey(model_sha, adapter_sha, settings.to_json(), hashes)


def plan_run(options: RunOptions, hasher: Hasher | None = None) -> _Run:
    """Every check that can fail before a model loads; reads files, writes none. The stale-merge
    check hashes the weights first (fresh), and the run key reuses those hashes; a second plan with
    the same `hasher` reads no file again that is unchanged since."""
    hasher = hasher or Hasher()
    check_writable(options.out_dir, "--out directory")
    samples = load_samples(resolve_dataset(options.dataset, options.data_dir), options.max_samples)
    notes = check_model(options.model, options.adapter, hasher)
    resolution = resolve_resolution(options.model, options.adapter, options.settings_from,
                                    options.image_max_pixels, options.image_min_pixels)
    key = run_key(options, samples, resolution, hasher)
    outputs = plan_outputs(options.out_dir, key, samples, force=options.force, resume=options.resume)
    return _Run(options, samples, resolution, key, outputs, hasher, notes=notes)


def plan_lines(run: _Run) -> list[str]:
    o, r = run.options, run.resolution
    lines = [
        f"model: {o.model}" + (f" + adapter {o.adapter}" if o.adapter else ""),
        f"dataset: {o.dataset} ({len(run.samples)} samples)",
        f"images: at most {r.max_pixels} pixels, at least {r.min_pixels} (from {r.source})",
        f"decoding: greedy, repetition_penalty {o.repetition_penalty}, "
        f"max_new_tokens {o.max_new_tokens}, batch size {o.batch_size}",
    ]
    return lines + ([run.outputs.line] if run.outputs.line else []) + run.notes


def run_evaluation(options: RunOptions, hooks: RunHooks | None = None) -> RunResult:
    """Plan, then reuse what the folder already holds or load the model and generate into it.
    SIGTERM and SIGHUP stop it as Ctrl-C does (`Interrupted`): the record says interrupted."""
    hooks = hooks or RunHooks()
    with stop_signals_interrupt():
        run = plan_run(options)
        hooks.on_start(plan_lines(run))
        if run.outputs.action == "reuse":
            return _scored(run, [run.outputs.done[s.id] for s in run.samples], reused=True)
        loaded = _load(run)  # a failure here writes nothing
        with output_lock(options.out_dir, what="evaluation"):
            # again: another run may have written the folder while the model loaded (the files hashed
            # before the load and unchanged since are not read again)
            run = plan_run(options, run.hasher)
            if run.outputs.action == "reuse":
                return _scored(run, [run.outputs.done[s.id] for s in run.samples], reused=True)
            predictions = _generate_into(run, loaded, hooks)
            return _scored(run, predictions, reused=False, finish=True)


def _load(run: _Run) -> LoadedModel | None:
    """The model, unless every sample is already done (an earlier run stopped before its record)."""
    if all(s.id in run.outputs.done for s in run.samples):
        return None
    from glmocr_lf.evaluation.generation import load_model

    return load_model(run.options.model, run.options.adapter, run.options.device, verbose=run.options.verbose)


def _record(run: _Run, loaded: LoadedModel | None, **fields: object) -> EvalRecord:
    o = run.options
    return EvalRecord.model_validate({
        "model": o.model, "adapter": str(o.adapter) if o.adapter else None, "dataset": o.dataset,
        "out_dir": str(o.out_dir), "data_dir": str(o.data_dir), "max_samples": o.max_samples,
        "settings": run.key.settings, "settings_source": run.resolution.source,
        "model_sha256": run.key.model_sha256, "adapter_sha256": run.key.adapter_sha256,
        "file_hashes": run.key.file_hashes, "batch_size": o.batch_size, "device": loaded.device if loaded else None,
        "samples": len(run.samples), "pid": os.getpid(), **fields})


def _start(run: _Run, loaded: LoadedModel | None) -> None:
    """Clear what a regenerated run replaces, then record the run as running."""
    out = ensure_dir(run.options.out_dir, "--out directory")
    if run.outputs.action in ("fresh", "regenerate"):
        for name in (SCORES_FILE, PREDICTIONS_FILE):
            remove_path(out / name)
    else:
        remove_path(out / SCORES_FILE)  # the scores of the finished set are written when it is whole
    if run.key.model_sha256 is None:  # a hub id downloaded by the load: its files are here now
        folder = model_folder(run.options.model)
        if folder is not None:
            sha, hashes = folder_fingerprint(folder, hasher=run.hasher)
            run.key = RunKey(sha, run.key.adapter_sha256, run.key.settings, {**run.key.file_hashes, str(folder): hashes})
    run.record = _record(run, loaded, status="running", started=now())
    write_eval_record(out, run.record)


def _generate_into(run: _Run, loaded: LoadedModel | None, hooks: RunHooks) -> list[Prediction]:
    from glmocr_lf.evaluation.generation import generate

    o, done = run.options, dict(run.outputs.done)
    _start(run, loaded)
    started = time.monotonic()
    todo = [s for s in run.samples if s.id not in done]
    try:
        with jsonl.Appender(o.out_dir / PREDICTIONS_FILE) as appender:
            for batch, answers in ([] if loaded is None else generate(loaded, todo, batch_size=o.batch_size,
                                           max_pixels=run.resolution.max_pixels,
                                           min_pixels=run.resolution.min_pixels,
                                           max_new_tokens=o.max_new_tokens,
                                           repetition_penalty=o.repetition_penalty)):
                for sample, answer in zip(batch, answers, strict=True):
                    done[sample.id] = _prediction(sample, answer)
                    appender.add(asdict(done[sample.id]))
                hooks.on_progress(len(done), len(run.samples))
    except BaseException as err:
        stop = stop_of(err)  # Ctrl-C, or SIGTERM / SIGHUP raised as it (stop_signals_interrupt)
        if stop is None:
            _end(run, "failed", started, error=str(err) or repr(err))
        else:
            _end(run, "interrupted", started, signal=stop.signal if isinstance(stop, Interrupted) else None)
        raise
    run.record = run.record.model_copy(update={"seconds": round(time.monotonic() - started, 2)})
    return [done[s.id] for s in run.samples]


def _prediction(sample: EvalSample, answer: str) -> Prediction:
    return Prediction(id=sample.id, task=detect_task(sample.user_text), prompt=sample.user_text,
                      reference=sample.reference.strip(), prediction=answer,
                      images=tuple(str(p.resolve()) for p in sample.images))


def _end(run: _Run, status: str, started: float, **fields: str | None) -> None:
    run.record = run.record.model_copy(update={
        "status": status, "finished": now(), "seconds": round(time.monotonic() - started, 2), **fields})
    write_eval_record(run.options.out_dir, run.record)


def _scored(run: _Run, predictions: list[Prediction], *, reused: bool, finish: bool = False) -> RunResult:
    """Score; a finished generation writes its predictions in dataset order, its scores, then the
    record that says it finished (last: a crash before it leaves a record that does not)."""
    from glmocr_lf.evaluation.score import score_predictions

    out = run.options.out_dir
    scores = score_predictions(predictions, source=str(out / PREDICTIONS_FILE))
    if finish:
        write_predictions(out / PREDICTIONS_FILE, predictions)  # dataset order, whatever order resumes took
        atomic_write_text(out / SCORES_FILE, json.dumps(scores.to_json(), indent=2, ensure_ascii=False) + "\n")
        run.record = run.record.model_copy(update={"status": "finished", "finished": now()})
        write_eval_record(out, run.record)
    return RunResult(out / PREDICTIONS_FILE, out / SCORES_FILE, scores, run.resolution, reused)

"""Scores per sample, per task (grouped by task prompt) and overall.

Every sample gets the text metrics (ned, cer, exact) and the repetition flag. On top, by its task:
GLM-OCR's table prompt gets teds and teds_s, its formula prompt latex_ned and latex_exact; a custom
prompt is classified by its reference (`<table>`: table, LaTeX-wrapped: formula, JSON: json_valid
and json_f1). `quality`
is the one higher-is-better number per sample used for verdicts: teds, 1 - latex_ned, json_f1 or
1 - ned. Task and overall values are means over the samples that have the metric.
`--protocol omnidocbench` swaps in OmniDocBench's normalisations and totals (`omnidocbench.py`).
Samples are scored in a process pool over every core (TEDS is pure Python, ~0.5 s a table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from glmocr_lf.evaluation import metrics as m
from glmocr_lf.evaluation.predictions import Prediction, read_predictions
from glmocr_lf.evaluation.scoretypes import (
    METRICS,
    SampleScore,
    Scores,
    TaskScore,
    sample_kind,
)
from glmocr_lf.runtime.constants import TASK_PROMPTS, Protocol
from glmocr_lf.runtime.workers import usable_cpus, worker_pool

OVERALL = "overall"
POOL_THRESHOLD = 16  # fewer samples score faster than a pool starts
POOL_CHUNK = 4


def score_sample(prediction: Prediction) -> SampleScore:
    pred, ref = prediction.prediction, prediction.reference
    kind = sample_kind(prediction)
    values: dict[str, float] = {
        "ned": m.normalized_edit_distance(pred, ref),
        "cer": m.character_error_rate(pred, ref),
        "exact": m.exact_match(pred, ref),
        "repetition": m.is_repetitive(pred, ref),
    }
    if kind == "table":
        values["teds"] = m.teds(pred, ref)
        values["teds_s"] = m.teds(pred, ref, structure_only=True)
        quality = values["teds"]
    elif kind == "formula":
        values["latex_ned"] = m.latex_edit_distance(pred, ref)
        values["latex_exact"] = m.latex_exact_match(pred, ref)
        quality = 1.0 - values["latex_ned"]
    elif kind == "json":
        values["json_valid"] = m.json_valid(pred)
        values["json_f1"] = m.json_field_f1(pred, ref)
        quality = values["json_f1"]
    else:
        quality = 1.0 - values["ned"]
    values["quality"] = quality
    ordered = {metric.name: values[metric.name] for metric in METRICS if metric.name in values}
    return SampleScore(id=prediction.id, task=prediction.task, kind=kind, metrics=ordered)


def summarize(task: str, samples: Sequence[SampleScore]) -> TaskScore:
    means: dict[str, float] = {}
    for metric in METRICS:
        values = [s.metrics[metric.name] for s in samples if metric.name in s.metrics]
        if values:
            means[metric.name] = sum(values) / len(values)
    return TaskScore(task=task, samples=len(samples), metrics=means)


def task_order(task: str) -> tuple[int, str]:
    """GLM-OCR's own tasks first (text, table, formula), then custom prompts by name."""
    builtin = list(TASK_PROMPTS)
    return (builtin.index(task), "") if task in builtin else (len(builtin), task)


def _protocol(name: Protocol) -> tuple[Callable[[Prediction], SampleScore],
                                        Callable[[str, Sequence[SampleScore]], TaskScore]]:
    if name == "omnidocbench":
        from glmocr_lf.evaluation import omnidocbench

        return omnidocbench.score_sample, omnidocbench.summarize
    return score_sample, summarize


def score_predictions(predictions: Sequence[Prediction], source: str = "", *, protocol: Protocol = "ours",
                      workers: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Scores:
    """Score every prediction; `workers` processes (default: every core) once there are enough of them."""
    scorer, summary = _protocol(protocol)
    samples = _map(scorer, predictions, workers, progress)
    by_task: dict[str, list[SampleScore]] = {}
    for sample in samples:
        by_task.setdefault(sample.task, []).append(sample)
    tasks = [summary(name, by_task[name]) for name in sorted(by_task, key=task_order)]
    tasks.append(summary(OVERALL, samples))
    return Scores(source=source, tasks=tasks, samples=samples)


def _map(scorer: Callable[[Prediction], SampleScore], predictions: Sequence[Prediction],
         workers: int | None, progress: Callable[[int, int], None] | None) -> list[SampleScore]:
    workers = workers if workers is not None else usable_cpus()
    total = len(predictions)
    if workers <= 1 or total < POOL_THRESHOLD:
        samples = []
        for prediction in predictions:
            samples.append(scorer(prediction))
            if progress:
                progress(len(samples), total)
        return samples
    # a TEDS costs ~0.5 s, so small chunks keep the cores even
    with worker_pool(min(workers, total)) as pool:
        samples = []
        for sample in pool.imap(scorer, predictions, chunksize=POOL_CHUNK):
            samples.append(sample)
            if progress:
                progress(len(samples), total)
    return samples


def score_file(path: Path, *, protocol: Protocol = "ours", workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> Scores:
    # ours compares answers without surrounding whitespace; OmniDocBench what the file holds
    predictions = read_predictions(path, strip=protocol != "omnidocbench")
    return score_predictions(predictions, source=str(path), protocol=protocol, workers=workers,
                             progress=progress)


# --------------------------------------------------------------------------------------------------
# Rendering (shared with compare, so both print the same numbers)


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def metric_columns(*score_sets: Scores) -> list[str]:
    present = {name for scores in score_sets for t in scores.tasks for name in t.metrics}
    return [metric.name for metric in METRICS if metric.name in present]


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def render_scores(scores: Scores) -> str:
    columns = metric_columns(scores)
    rows = [["task", "n", *columns]]
    for task in scores.tasks:
        rows.append([task.task, str(task.samples),
                     *(format_value(task.metrics.get(name)) for name in columns)])
    return render_table(rows)

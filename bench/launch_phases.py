"""Where a run's launch goes: the probe's phase events (`<probe>.phases.jsonl`, written by
bench/gpu_probe/_glmocr_bench_phases.py in every process of the run) turned into seconds per phase,
from the benchmark spawning the command (t0) to the end of the first optimizer step.

Phases follow each other in time; "other" is what lies between them (template set-up, argument
reading before the parser, the summary of the dataset), so the rows add up to the total.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

# in time order; `breakdown` computes each from the events (None where a run has no such phase)
ROWS = (
    "glmocr-lf: start-up and imports", "glmocr-lf: key table", "glmocr-lf: host probe",
    "glmocr-lf: data check", "glmocr-lf: rest of the plan", "spawn (ours: run record, llamafactory-cli start)",
    "python start (interpreter, site)", "imports (torch, transformers, llamafactory)",
    "arguments (parser, TrainingArguments)", "tokenizer + processor",
    "dataset load + convert: train", "dataset load + convert: eval", "tokenize: train", "tokenize: eval",
    "dataset: split, tokenized cache save/load", "model load", "before Trainer (collator, ...)",
    "Trainer.__init__", "train() set-up (loader, optimizer)", "first batch (loader workers, fetch)",
    "first optimizer step", "other",
)
TOTALS = ("launch -> first step begins", "launch -> first step ends")


def _spans(events: Iterable[dict[str, Any]], pid: int | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("event") == "span" and (pid is None or e.get("pid") == pid):
            out.setdefault(e["name"], []).append(e)
    return out


def _marks(events: Iterable[dict[str, Any]], pid: int | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in events:
        if e.get("event") == "mark" and (pid is None or e.get("pid") == pid):
            out.setdefault(e["name"], e["t"])
    return out


def _training_pid(events: Sequence[dict[str, Any]]) -> int | None:
    """The process that trained on rank 0: it marked "train begin" (else: it ran run_exp, rank 0)."""
    for e in events:
        if e.get("event") == "mark" and e["name"] == "train begin":
            return int(e["pid"])
    ranks = {e["pid"]: e.get("rank") for e in events if e.get("event") == "process"}
    for e in events:
        if e.get("event") == "span" and e["name"] == "run_exp" and ranks.get(e["pid"]) in (None, "0"):
            return int(e["pid"])
    return None


def _dur(spans: dict[str, list[dict[str, Any]]], name: str) -> float | None:
    found = spans.get(name)
    return sum(s["end"] - s["start"] for s in found) if found else None


def _first(spans: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any] | None:
    found = spans.get(name)
    return found[0] if found else None


def _glmocr_rows(events: Sequence[dict[str, Any]], t0: float, train_exec: float | None) -> dict[str, float | None]:
    plan_span = next((e for e in events if e.get("event") == "span" and e["name"] == "glmocr-lf plan"), None)
    if plan_span is None:  # the vendor: llamafactory-cli is the command itself
        return {"spawn (ours: run record, llamafactory-cli start)": train_exec - t0 if train_exec else None}
    spans = _spans(events, plan_span["pid"])
    names = {"glmocr-lf: key table": "glmocr-lf key table", "glmocr-lf: host probe": "glmocr-lf host probe",
             "glmocr-lf: data check": "glmocr-lf data check"}
    parts = {row: _dur(spans, name) for row, name in names.items()}
    # the key table may be built before planning (reading the config): it is not part of the plan then
    before = sum(s["end"] - s["start"] for name in names.values() for s in spans.get(name, ())
                 if s["start"] < plan_span["start"])
    plan = plan_span["end"] - plan_span["start"]
    return {"glmocr-lf: start-up and imports": plan_span["start"] - t0 - before, **parts,
            "glmocr-lf: rest of the plan": plan - sum(v for v in parts.values() if v is not None) + before,
            "spawn (ours: run record, llamafactory-cli start)":
                train_exec - plan_span["end"] if train_exec else None}


def _dataset_rows(spans: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    parts = {"dataset load + convert: train": _dur(spans, "dataset load"),
             "dataset load + convert: eval": _dur(spans, "dataset load eval"),
             "tokenize: train": _dur(spans, "tokenize train"), "tokenize: eval": _dur(spans, "tokenize eval")}
    whole = _dur(spans, "dataset")
    rest = whole - sum(v for v in parts.values() if v is not None) if whole is not None else None
    return {**parts, "dataset: split, tokenized cache save/load": rest}


def breakdown(events: Sequence[dict[str, Any]], t0: float) -> dict[str, float | None]:
    """Seconds per phase (ROWS, then TOTALS); None for a phase the run did not have or record."""
    pid = _training_pid(events)
    proc = next((e for e in events if e.get("event") == "process" and e.get("pid") == pid), None)
    spans, marks = _spans(events, pid), _marks(events, pid)
    train_exec = (proc.get("exec") or proc.get("site")) if proc else None
    rows: dict[str, float | None] = dict.fromkeys(ROWS)
    rows.update(_glmocr_rows(events, t0, train_exec))
    run_exp, model = _first(spans, "run_exp"), _first(spans, "model load")
    init = _first(spans, "trainer init")
    if proc and proc.get("exec"):
        rows["python start (interpreter, site)"] = proc["site"] - proc["exec"]
    # the end of the trainer modules' import (run_exp has no span in a launch-only run: it never returns)
    imported = marks.get("imported llamafactory.train.tuner") or (run_exp["start"] if run_exp else None)
    if proc and imported:
        rows["imports (torch, transformers, llamafactory)"] = imported - proc["site"]
    rows["arguments (parser, TrainingArguments)"] = _dur(spans, "arguments")
    rows["tokenizer + processor"] = _dur(spans, "tokenizer+processor")
    rows.update(_dataset_rows(spans))
    rows["model load"] = _dur(spans, "model load")
    begin, step, end = marks.get("train begin"), marks.get("first step begin"), marks.get("first step end")
    if model and init:
        rows["before Trainer (collator, ...)"] = init["start"] - model["end"]
        rows["Trainer.__init__"] = init["end"] - init["start"]
        rows["train() set-up (loader, optimizer)"] = begin - init["end"] if begin else None
    if begin and step:
        rows["first batch (loader workers, fetch)"] = step - begin
    if step and end:
        rows["first optimizer step"] = end - step
    last = end or step
    if last is not None:
        rows["other"] = (last - t0) - sum(v for k, v in rows.items() if v is not None and k != "other")
    rows["launch -> first step begins"] = step - t0 if step else None
    rows["launch -> first step ends"] = end - t0 if end else None
    return rows


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def table(columns: dict[str, list[dict[str, float | None]]]) -> str:
    """Markdown: one row per phase, one column per label; several runs under a label give
    `median (min–max)`. Rows no run has are left out."""
    labels = list(columns)
    lines = ["| phase (s) | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for row in (*ROWS, *TOTALS):
        cells = [[v for r in columns[label] if (v := r.get(row)) is not None] for label in labels]
        if not any(cells):
            continue
        name = f"**{row}**" if row in TOTALS else row
        lines.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)

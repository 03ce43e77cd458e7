"""bench/launch_phases.py: the probe's launch events become seconds per phase that add up to the total."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from launch_phases import TOTALS, breakdown, table


def span(pid: int, name: str, start: float, end: float) -> dict[str, Any]:
    return {"event": "span", "pid": pid, "name": name, "start": start, "end": end}


def mark(pid: int, name: str, t: float) -> dict[str, Any]:
    return {"event": "mark", "pid": pid, "name": name, "t": t}


def ours_events(t0: float) -> list[dict[str, Any]]:
    """glmocr-lf (pid 1; its key table built while reading the config, before planning) starts
    llamafactory-cli (pid 2), which stops at its first step (launch-only: run_exp never returns)."""
    return [
        {"event": "process", "pid": 1, "exec": t0, "site": t0 + 0.1},
        span(1, "glmocr-lf key table", t0 + 0.3, t0 + 6.3),
        span(1, "glmocr-lf host probe", t0 + 6.4, t0 + 6.5),
        span(1, "glmocr-lf data check", t0 + 6.5, t0 + 7.0),
        span(1, "glmocr-lf plan", t0 + 6.35, t0 + 7.2),
        {"event": "process", "pid": 2, "exec": t0 + 7.5, "site": t0 + 7.6},
        mark(2, "imported llamafactory.train.tuner", t0 + 12.6),
        span(2, "arguments", t0 + 12.7, t0 + 12.8),
        span(2, "tokenizer+processor", t0 + 12.8, t0 + 13.0),
        span(2, "dataset load", t0 + 13.0, t0 + 13.5),
        span(2, "tokenize train", t0 + 13.5, t0 + 18.5),
        span(2, "dataset", t0 + 13.0, t0 + 18.6),
        span(2, "model load", t0 + 18.6, t0 + 19.6),
        span(2, "trainer init", t0 + 19.7, t0 + 19.8),
        mark(2, "train begin", t0 + 20.0),
        mark(2, "first step begin", t0 + 21.0),
    ]


def test_phases_add_up_to_the_launch_and_none_is_negative() -> None:
    t0 = 1000.0
    rows = breakdown(ours_events(t0), t0)
    assert rows["launch -> first step begins"] == 21.0
    assert rows["launch -> first step ends"] is None
    assert rows["glmocr-lf: key table"] == 6.0
    assert round(rows["glmocr-lf: start-up and imports"] or 0, 6) == 0.35  # 6.35 s to the plan, less the table built before it
    assert round(rows["glmocr-lf: rest of the plan"] or 0, 6) == round(0.85 - 0.6, 6)
    assert round(rows["imports (torch, transformers, llamafactory)"] or 0, 6) == 5.0
    assert round(rows["tokenize: train"] or 0, 6) == 5.0
    assert round(rows["dataset: split, tokenized cache save/load"] or 0, 6) == 0.1
    assert round(rows["first batch (loader workers, fetch)"] or 0, 6) == 1.0
    phases = [v for k, v in rows.items() if k not in TOTALS and v is not None]
    assert all(v >= -1e-9 for v in phases), rows
    assert round(sum(phases), 6) == 21.0


def test_the_table_gives_median_and_range_per_label() -> None:
    runs = [breakdown(ours_events(1000.0), 1000.0), breakdown(ours_events(2000.0), 2000.0 - 1.0)]
    lines = table({"ours": runs}).splitlines()
    assert lines[:2] == ["| phase (s) | ours |", "|---|---|"]
    assert "| **launch -> first step begins** | 21.50 (21.00–22.00) |" in lines

"""`glmocr-lf eval compare`: deltas, verdict rule, regressions; numbers equal `eval score`'s."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import EVAL_SKIP_REASON

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)
from helpers import Invoke

from glmocr_lf.evaluation.compare import decide, sign_test

TABLE = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>apple</td><td>3</td></tr></table>"


def sample(id_: str, task: str, reference: str, prediction: str) -> dict[str, str]:
    prompts = {"text": "<image>Text Recognition:", "table": "<image>Table Recognition:"}
    return {"id": id_, "task": task, "prompt": prompts[task], "reference": reference,
            "prediction": prediction}


BASE = [
    sample("t1", "text", "Hello world", "Hello world"),
    sample("t2", "text", "kitten", "sitting"),
    sample("tb", "table", TABLE, TABLE),
]
TUNED = [
    sample("t1", "text", "Hello world", "Hello world"),
    sample("t2", "text", "kitten", "kitten"),  # improved
    # regressed: cell "apple" -> "apples```" costs 4/9 of one of 6 nodes: TEDS 1 - 4/54
    sample("tb", "table", TABLE, TABLE.replace(">apple<", ">apples```<")),
]


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    return write_jsonl(tmp_path / "base.jsonl", BASE), write_jsonl(tmp_path / "tuned.jsonl", TUNED)


def test_markdown_report(invoke: Invoke, two_runs: tuple[Path, Path]) -> None:
    result = invoke("eval", "compare", "base.jsonl", "tuned.jsonl")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["# Evaluation report", "", "- A: `base.jsonl` (3 samples)",
                         "- B: `tuned.jsonl` (3 samples)"]
    assert ("**Verdict: no clear change: quality +0.1182 over 3 paired samples "
            "(1 improved, 1 regressed, sign test p=1.0000)**") in lines
    assert "| text | ned ↓ | 0.2143 | 0.0000 | -0.2143 |" in lines
    assert "| table | teds ↑ | 1.0000 | 0.9259 | -0.0741 |" in lines
    assert "| table | teds_s ↑ | 1.0000 | 1.0000 | +0.0000 |" in lines
    assert "| text | teds ↑ | - | - | - |" not in lines
    assert "## Most regressed samples (1)" in lines
    assert "### 1. `tb` (table): quality 1.0000 -> 0.9259" in lines
    # B's answer holds a ``` run, so its fence is longer
    assert "````text" in lines


def test_report_file_and_numbers_equal_eval_score(invoke: Invoke, two_runs: tuple[Path, Path]) -> None:
    result = invoke("eval", "compare", "base.jsonl", "tuned.jsonl", "--out", "report.md")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Warning: base.jsonl: no eval_run.json beside it: its settings are not checked",
        "Warning: tuned.jsonl: no eval_run.json beside it: its settings are not checked",
        "Verdict: no clear change: quality +0.1182 over 3 paired samples (1 improved, 1 regressed, "
        "sign test p=1.0000)",
        "Wrote report.md and report.html",
    ]
    report = Path("report.md").read_text(encoding="utf-8")
    assert_markdown_matches_score(invoke, report, "base.jsonl", "tuned.jsonl")


def assert_markdown_matches_score(invoke: Invoke, report: str, a: str, b: str) -> None:
    """Every A and B number in the per-task table equals `eval score`'s printed value."""
    printed: dict[str, dict[tuple[str, str], str]] = {}
    for name in (a, b):
        rows = [re.split(r"\s{2,}", line.strip())
                for line in invoke("eval", "score", name).stdout.splitlines()]
        header = rows[0]
        printed[name] = {(row[0], metric): value for row in rows[1:]
                         for metric, value in zip(header[2:], row[2:], strict=True)}
    table_rows = re.findall(r"^\| (.+?) \| (\S+) [↑↓] \| (\S+) \| (\S+) \| \S+ \|$", report, re.M)
    assert table_rows
    for task, metric, value_a, value_b in table_rows:
        assert printed[a][(task, metric)] == value_a
        assert printed[b][(task, metric)] == value_b


def test_json_report_equals_score_json(invoke: Invoke, two_runs: tuple[Path, Path]) -> None:
    result = invoke("eval", "compare", "base.jsonl", "tuned.jsonl", "--json", "--top", "5")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["a"] == json.loads(invoke("eval", "score", "base.jsonl", "--json").stdout)
    assert report["b"] == json.loads(invoke("eval", "score", "tuned.jsonl", "--json").stdout)
    assert report["verdict"]["outcome"] == "no clear change"
    assert report["regressions"] == [{
        "id": "tb", "task": "table", "quality_a": 1.0, "quality_b": 0.925926, "reference": TABLE,
        "prediction_a": TABLE, "prediction_b": TABLE.replace(">apple<", ">apples```<")}]
    delta = next(d for d in report["deltas"] if (d["task"], d["metric"]) == ("text", "ned"))
    assert delta == {"task": "text", "metric": "ned", "a": 0.214286, "b": 0.0, "delta": -0.214286}


def test_different_references_are_refused(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", BASE)
    write_jsonl(tmp_path / "b.jsonl", [sample("t1", "text", "Other", "Other")])
    result = invoke("eval", "compare", "a.jsonl", "b.jsonl")
    assert (result.exit_code, result.stderr) == (
        1, "Error: sample 't1' has different references in a.jsonl and b.jsonl: compare "
           "predictions made on the same dataset\n")


def test_no_shared_ids_are_refused(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", BASE)
    write_jsonl(tmp_path / "b.jsonl", [sample("zz", "text", "x", "x")])
    result = invoke("eval", "compare", "a.jsonl", "b.jsonl")
    assert (result.exit_code, result.stderr) == (
        1, "Error: a.jsonl and b.jsonl share no sample ids: compare predictions made on the same "
           "dataset\n")


def test_sign_test_by_hand() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(6, 0) == pytest.approx(2 / 64)
    assert sign_test(5, 1) == pytest.approx(2 * 7 / 64)


@pytest.mark.parametrize(("deltas", "outcome"), [
    ([0.1] * 6, "better"),
    ([-0.1] * 6, "worse"),
    ([0.1] * 5, "no clear change"),  # p = 0.0625: too few samples to tell
    ([0.001] * 20, "no clear change"),  # consistent but below MIN_DELTA
    ([0.2, -0.2] * 10, "no clear change"),
    ([0.05] * 9 + [-0.01], "better"),  # p = 0.0215
])
def test_verdict_rule(deltas: list[float], outcome: str) -> None:
    assert decide(deltas).outcome == outcome


@pytest.mark.parametrize("args, error", [
    (["score", "."], "Error: .: is a directory, expected a predictions file"),
    (["score", "nope.jsonl"], "Error: nope.jsonl: no such file"),
    (["compare", ".", "b.jsonl"], "Error: .: is a directory, expected a predictions file"),
    (["compare", "b.jsonl", "."], "Error: .: is a directory, expected a predictions file"),
    (["compare", "nope.jsonl", "b.jsonl"], "Error: nope.jsonl: no such file"),
])
def test_a_folder_or_missing_file_for_predictions_is_one_error_exit_1(invoke: Invoke, args: list[str],
                                                                       error: str) -> None:
    """A wrong path is a data error (exit 1) for score and compare alike; exit 2 is kept for usage."""
    Path("b.jsonl").write_text(json.dumps({"reference": "a", "prediction": "a"}) + "\n", encoding="utf-8")
    result = invoke("eval", *args)
    assert (result.exit_code, result.stderr.splitlines()) == (1, [error])

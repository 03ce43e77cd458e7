"""`glmocr-lf eval run`: dataset resolution, prompt and resolution parity with LLaMA-Factory, and an
end-to-end run on a tiny GLM-OCR (real generation on CPU) followed by `eval compare`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import EVAL_SKIP_REASON

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)
from helpers import SAMPLE_IMAGES, SAMPLE_JSON, Invoke, counted_hashes

from glmocr_lf.data.template import build_prompt
from glmocr_lf.evaluation.dataset import EvalSample, load_samples, resolve_dataset
from glmocr_lf.evaluation.settings import Resolution, resolve_resolution
from glmocr_lf.runtime.errors import DataError, GlmocrLfError
from glmocr_lf.runtime.records import read_eval_record

OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
               "assistant_tag": "assistant"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A registered copy of the sample dataset, as `data register` leaves it."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE_JSON, data / "chem.json")
    shutil.copytree(SAMPLE_IMAGES, data / "cosyn_chemical")
    info = {"chem": {"file_name": "chem.json", "formatting": "sharegpt",
                     "columns": {"messages": "messages", "images": "images"}, "tags": OPENAI_TAGS}}
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return data


def test_prompt_is_the_glm_ocr_training_string() -> None:
    assert build_prompt("<image>Text Recognition:", None) == (
        "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>Text Recognition:<|assistant|>")
    assert build_prompt("<image>Table Recognition:", "Be exact.").startswith(
        "[gMASK]<sop><|system|>\nBe exact.<|user|>\n")


def test_registered_dataset_and_direct_file_give_the_same_samples(data_dir: Path) -> None:
    registered = load_samples(resolve_dataset("chem", data_dir), max_samples=3)
    direct = load_samples(resolve_dataset(str(SAMPLE_JSON), data_dir), max_samples=3)
    assert [s.id for s in registered] == ["0", "1", "2"]
    assert registered[0].user_text == "<image>Code Generation:"
    assert registered[0].images == [data_dir / "cosyn_chemical" / "1.png"]
    assert [(s.user_text, s.reference) for s in registered] == [
        (s.user_text, s.reference) for s in direct]
    assert direct[0].images == [SAMPLE_IMAGES / "1.png"]


def test_unknown_dataset_names_the_registered_ones(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("eval", "run", "--model", "m", "--dataset", "nope")
    assert result.exit_code == 1
    assert result.stderr == ("Error: dataset 'nope' is not registered in data/dataset_info.json\n"
                             "Hint: registered: chem\n")


def test_image_count_mismatch_is_a_data_error(tmp_path: Path) -> None:
    bad = [{"messages": [{"role": "user", "content": "Text Recognition:"},
                         {"role": "assistant", "content": "x"}], "images": ["a.png"]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_samples(resolve_dataset(str(tmp_path / "bad.json"), tmp_path))
    assert err.value.message == (f"{tmp_path / 'bad.json'}: 1 error(s)\n"
                                 f"  {tmp_path / 'bad.json'}: sample 0: images: 1 image but 0 <image> "
                                 "placeholders in messages; they must be equal")


def test_a_model_that_cannot_load_is_one_error_before_anything(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("eval", "run", "--model", "m", "--dataset", str(SAMPLE_JSON), "--out", "out")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: --model m is not in the Hugging Face cache and HF_HUB_OFFLINE " \
        "is set; eval could not load it. Fix: download it on a connected machine (`hf download m`) and bring " \
        "its cache (HF_HOME) or the folder here, then pass that folder; to try the pipeline here without it: " \
        "`glmocr-lf smoke-model tiny`, then `glmocr-lf train CONFIG model_name_or_path=tiny bf16=false`"
    assert not Path("out").exists()


def test_a_truncated_image_fails_before_the_model_loads(invoke: Invoke, tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_IMAGES, "images")
    png = Path("images/1.png").read_bytes()
    Path("images/1.png").write_bytes(png[: len(png) // 2])
    samples = json.loads(SAMPLE_JSON.read_text())[:2]
    for sample in samples:
        sample["images"] = [image.replace("cosyn_chemical/", "images/") for image in sample["images"]]
    Path("cut.json").write_text(json.dumps(samples), encoding="utf-8")
    result = invoke("eval", "run", "--model", "no/such-model", "--dataset", "cut.json", "--out", "out")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: cut.json: 1 error(s)"
    assert lines[1].startswith("  cut.json: sample 0: images[0]: ") and "truncated" in lines[1], lines
    assert not Path("out/predictions.jsonl").exists()


def test_image_limits_come_from_the_training_record(tmp_path: Path) -> None:
    from glmocr_lf.runtime.records import ExportRecord, write_export_record

    model = tmp_path / "model"
    model.mkdir()
    assert resolve_resolution(str(model), None, None, None, None) == Resolution(
        589824, 1024, "LLaMA-Factory's default; no training record found")
    write_export_record(model, ExportRecord(image_max_pixels=802816, image_min_pixels=4096))
    assert resolve_resolution(str(model), None, None, None, None) == Resolution(
        802816, 4096, str(model / "glmocr_lf_export.json"))
    assert resolve_resolution(str(model), None, None, 1000, None) == Resolution(
        1000, 4096, f"--image-max-pixels / --image-min-pixels and {model / 'glmocr_lf_export.json'}")
    run = tmp_path / "run"
    (run / "checkpoint-20").mkdir(parents=True)
    (run / "glmocr_lf_run.json").write_text('{"status": "finished", "image_max_pixels": 262144}')
    (run / "notes.yaml").write_text("image_max_pixels: 4096\n")  # a YAML beside the run is not a record
    assert resolve_resolution(str(model), run / "checkpoint-20", None, None, None) == Resolution(
        262144, 4096, f"{run / 'glmocr_lf_run.json'} and {model / 'glmocr_lf_export.json'}")


def test_a_base_takes_the_fine_tunes_image_limits(tmp_path: Path) -> None:
    from glmocr_lf.runtime.records import ExportRecord, write_export_record

    merged = tmp_path / "merged"
    merged.mkdir()
    write_export_record(merged, ExportRecord(image_max_pixels=50176, image_min_pixels=1024))
    base = tmp_path / "base"
    base.mkdir()
    assert resolve_resolution(str(base), None, merged, None, None) == Resolution(
        50176, 1024, str(merged / "glmocr_lf_export.json"))
    with pytest.raises(GlmocrLfError) as err:
        resolve_resolution(str(base), None, base, None, None)
    assert err.value.message == f"--settings-from {base}: no export or training record there"


# --------------------------------------------------------------------------------------------------
# End to end on a tiny GLM-OCR

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("torch")
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return (build_tiny_glm_ocr(root / "seed0", seed=0),
                build_tiny_glm_ocr(root / "seed1", seed=1))


@pytest.mark.e2e
def test_prompt_and_pixels_match_llamafactory(tiny_models: tuple[Path, Path]) -> None:
    """Our input_ids and pixel_values equal what LLaMA-Factory's glm_ocr template and glm4v plugin
    build for training, with a pixel budget that makes LLaMA-Factory resize the image."""
    import torch
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from PIL import Image
    from transformers import AutoProcessor

    from glmocr_lf.data.resize import lf_preprocess_image

    max_pixels, min_pixels = 200_000, 1024
    image = SAMPLE_IMAGES / "1.png"
    processor = AutoProcessor.from_pretrained(tiny_models[0])
    template = get_template_and_fix_tokenizer(processor.tokenizer, DataArguments(template="glm_ocr"))
    for name, value in {"image_max_pixels": max_pixels, "image_min_pixels": min_pixels,
                        "video_max_pixels": 65536, "video_min_pixels": 256, "video_fps": 2.0,
                        "video_maxlen": 128}.items():
        setattr(processor, name, value)  # what LLaMA-Factory's patcher sets
    messages = [{"role": "user", "content": "<image>Code Generation:"},
                {"role": "assistant", "content": "CCO"}]
    messages = template.mm_plugin.process_messages(messages, [str(image)], [], [], processor)
    lf_ids, _ = template.encode_oneturn(processor.tokenizer, messages)
    lf_pixels = template.mm_plugin._get_mm_inputs([str(image)], [], [], processor)["pixel_values"]

    sample = EvalSample("0", None, "<image>Code Generation:", [image], "CCO")
    with Image.open(image) as img:
        resized = lf_preprocess_image(img, max_pixels, min_pixels)
    ours = processor(text=[build_prompt(sample.user_text, sample.system)], images=[resized], return_tensors="pt",
                     add_special_tokens=False)
    assert ours["input_ids"][0].tolist() == lf_ids
    assert torch.allclose(ours["pixel_values"], lf_pixels)


@pytest.mark.e2e
def test_run_twice_then_compare(invoke: Invoke, tiny_models: tuple[Path, Path],
                                data_dir: Path) -> None:
    seed0, seed1 = tiny_models
    common = ["--dataset", "chem", "--max-samples", "3", "--max-new-tokens", "8", "--device", "cpu"]
    result = invoke("eval", "run", "--model", str(seed0), "--out", "base", *common)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[:4] == [
        f"model: {seed0}",
        "dataset: chem (3 samples)",
        "images: at most 589824 pixels, at least 1024 (from LLaMA-Factory's default; no training record found)",
        "decoding: greedy, repetition_penalty 1.0, max_new_tokens 8, batch size 1",
    ]
    # no terminal: a plain progress line, then what was written
    assert re.fullmatch(r"generating 3/3 samples \(\d+\.\d s\)", result.stderr.splitlines()[-2])
    assert result.stderr.splitlines()[-1] == "Wrote base/predictions.jsonl and base/scores.json"
    # stdout is exactly what `eval score` prints for the file
    assert result.stdout == invoke("eval", "score", "base/predictions.jsonl").stdout

    records = [json.loads(line) for line in Path("base/predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["task"], r["prompt"]) for r in records] == [
        (str(i), "Code Generation:", "<image>Code Generation:") for i in range(3)]
    assert records[0]["reference"] == "```rdkit\nClC1=CC=C(C(C2=CC=C(Cl)C=C2)C(Cl)(Cl)Cl)C=C1\n```"
    assert all(isinstance(r["prediction"], str) and r["prediction"] for r in records)
    assert records[0]["images"] == [str((data_dir / "cosyn_chemical" / "1.png").resolve())]
    assert json.loads(Path("base/scores.json").read_text()) == json.loads(
        invoke("eval", "score", "base/predictions.jsonl", "--json").stdout)

    # batched generation (left padding) gives the same answers as one at a time
    result = invoke("eval", "run", "--model", str(seed0), "--out", "batched",
                    "--batch-size", "3", "--repetition-penalty", "1.0", *common)
    assert result.exit_code == 0, result.stderr
    assert Path("batched/predictions.jsonl").read_text() == Path("base/predictions.jsonl").read_text()

    # a LoRA adapter on top of the base changes the answers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(seed0), lora).save_pretrained("lora")
    result = invoke("eval", "run", "--model", str(seed0), "--adapter", "lora",
                    "--out", "adapted", *common)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"model: {seed0} + adapter lora"
    assert Path("adapted/predictions.jsonl").read_text() != Path("base/predictions.jsonl").read_text()

    result = invoke("eval", "run", "--model", str(seed1), "--out", "tuned",
                    "--repetition-penalty", "1.1", *common)
    assert result.exit_code == 0, result.stderr

    # tuned decoded with another repetition penalty: no verdict, unless asked for with the difference on top
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "report.md")
    assert result.exit_code == 1 and not Path("report.md").exists()
    assert result.stderr.splitlines()[1:3] == ["  repetition_penalty: A 1.0, B 1.1",
                                               "Hint: run both with the same settings (`eval run --settings-from "
                                               "MODEL` takes a fine-tune's image limits), or pass "
                                               "--allow-different-settings"]
    result = invoke("eval", "compare", "base/predictions.jsonl", "tuned/predictions.jsonl", "--out", "report.md",
                    "--allow-different-settings")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote report.md and report.html"
    report = Path("report.md").read_text(encoding="utf-8")
    assert report.splitlines()[4:8] == [
        "", "**Compared anyway, with different settings (--allow-different-settings):**", "",
        "- repetition_penalty: A 1.0, B 1.1"]
    assert re.search(r"^\*\*Verdict: (B is better than A|B is worse than A|no clear change): ",
                     report, re.M)
    # every number in the report's task table is what `eval score` prints for that file
    printed = {}
    for name in ("base/predictions.jsonl", "tuned/predictions.jsonl"):
        rows = [re.split(r"\s{2,}", line.strip())
                for line in invoke("eval", "score", name).stdout.splitlines()]
        printed[name] = {(row[0], metric): value for row in rows[1:]
                         for metric, value in zip(rows[0][2:], row[2:], strict=True)}
    table = re.findall(r"^\| (.+?) \| (\S+) [↑↓] \| (\S+) \| (\S+) \| \S+ \|$", report, re.M)
    assert {task for task, *_ in table} == {"Code Generation:", "overall"}
    for task, metric, value_a, value_b in table:
        assert printed["base/predictions.jsonl"][(task, metric)] == value_a
        assert printed["tuned/predictions.jsonl"][(task, metric)] == value_b


def test_a_merge_whose_adapter_changed_is_refused_before_loading(invoke: Invoke, tmp_path: Path) -> None:
    from glmocr_lf.runtime.modelfiles import file_sha256

    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"adapter after 3 steps")
    merged = run / "merged"
    merged.mkdir()
    record = {"adapter": str(run), "adapter_sha256": file_sha256(run / "adapter_model.safetensors")}
    (merged / "glmocr_lf_export.json").write_text(json.dumps(record), encoding="utf-8")
    (run / "adapter_model.safetensors").write_bytes(b"adapter after train --fresh")  # trained again
    result = invoke("eval", "run", "--model", str(merged), "--dataset", str(SAMPLE_JSON), "--out", "e")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {merged} was merged from the adapter {run}, which has changed since (trained again?): "
        "its scores would describe another model",
        f"Hint: merge it again: glmocr-lf export --adapter {run} --out {merged} --force",
    ]
    assert not Path("e").exists()


def exported_model(root: Path) -> Path:
    """What `export` leaves: a model folder, its weights, and a record naming them and the adapter merged."""
    from glmocr_lf.runtime.modelfiles import file_sha256
    from glmocr_lf.runtime.records import ExportRecord, write_export_record

    (root / "run").mkdir()
    (root / "run" / "adapter_model.safetensors").write_bytes(b"adapter")
    merged = root / "merged"
    merged.mkdir()
    for name, text in {"config.json": '{"model_type": "glm_ocr"}', "tokenizer.json": "{}",
                       "preprocessor_config.json": "{}", "video_preprocessor_config.json": "{}",
                       "chat_template.jinja": "x", "model.safetensors": "weights one"}.items():
        (merged / name).write_text(text)
    write_export_record(merged, ExportRecord(
        adapter=str(root / "run"), adapter_sha256=file_sha256(root / "run" / "adapter_model.safetensors"),
        weights_sha256={"model.safetensors": file_sha256(merged / "model.safetensors")}))
    return merged


def answering_x(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model seam: no model loads, every answer is "x"."""
    from glmocr_lf.evaluation import generation

    def generate(_loaded: object, samples: list[EvalSample], **_: object) -> Iterator[tuple[list[EvalSample], list[str]]]:
        for sample in samples:
            yield [sample], ["x"]

    monkeypatch.setattr(generation, "load_model", lambda *_, **__: generation.LoadedModel(None, None, SimpleNamespace(device="cpu")))
    monkeypatch.setattr(generation, "generate", generate)


def test_eval_run_hashes_each_file_once_and_the_stale_check_trusts_no_cache(
        invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    merged = exported_model(tmp_path)
    answering_x(monkeypatch)
    counts = counted_hashes(monkeypatch)
    args = ("eval", "run", "--model", "merged", "--dataset", str(SAMPLE_JSON), "--max-samples", "2", "--out", "out")
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    model_files = {f"merged/{name}": 1 for name in ("config.json", "tokenizer.json", "preprocessor_config.json",
                                                    "video_preprocessor_config.json", "chat_template.jinja",
                                                    "model.safetensors")}
    images = {"cosyn_chemical/1.png": 1, "cosyn_chemical/2.png": 1}
    # planned twice (before and after the model loads), each file read once
    assert counts == {**model_files, "run/adapter_model.safetensors": 1, **images}

    counts.clear()
    result = invoke(*args)
    assert result.stderr.splitlines()[-1] == "Reused out/predictions.jsonl and out/scores.json"
    # the record's sizes and mtimes spare the configs; the stale check reads the weights and the adapter
    assert counts == {"merged/model.safetensors": 1, "run/adapter_model.safetensors": 1, **images}

    # written over in place with the same size and mtime: what the record remembers does not hide it
    weights = merged / "model.safetensors"
    stat = weights.stat()
    weights.write_text("weights two")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == ("Error: merged: model.safetensors is not the file its export record "
                                             "names (written over since?): its scores would describe another model")


@pytest.mark.e2e
def test_interrupted_run_keeps_its_predictions_and_resume_finishes_it(
        invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    from glmocr_lf.evaluation.run import RunHooks, RunOptions, run_evaluation

    seed0 = tiny_models[0]
    common = ["--dataset", "chem", "--max-samples", "3", "--max-new-tokens", "8", "--device", "cpu"]
    assert invoke("eval", "run", "--model", str(seed0), "--out", "whole", *common).exit_code == 0

    def stop_after_first(done: int, _total: int) -> None:
        assert len(Path("cut/predictions.jsonl").read_text().splitlines()) == done  # on disk already
        raise KeyboardInterrupt

    options = RunOptions(model=str(seed0), dataset="chem", out_dir=Path("cut"), max_samples=3,
                         max_new_tokens=8, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(options, RunHooks(on_progress=stop_after_first))
    assert len(Path("cut/predictions.jsonl").read_text().splitlines()) == 1
    assert json.loads(Path("cut/eval_run.json").read_text())["status"] == "interrupted"
    assert not Path("cut/scores.json").exists()

    # the same command continues: no --resume, no --force
    result = invoke("eval", "run", "--model", str(seed0), "--out", "cut", *common)
    assert result.exit_code == 0, result.stderr
    assert ("resuming: 1 of 3 samples already in cut/predictions.jsonl (the earlier run interrupted)"
            in result.stderr.splitlines())
    assert json.loads(Path("cut/eval_run.json").read_text())["status"] == "finished"
    assert Path("cut/predictions.jsonl").read_text() == Path("whole/predictions.jsonl").read_text()


@pytest.mark.e2e
def test_ctrl_c_says_how_to_resume(invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    import threading

    predictions = Path("cut/predictions.jsonl")

    def ctrl_c_after_the_first_prediction() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if predictions.is_file() and predictions.read_text():
                os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C does to us
                return
            time.sleep(0.005)

    threading.Thread(target=ctrl_c_after_the_first_prediction, daemon=True).start()
    result = invoke("eval", "run", "--model", str(tiny_models[0]), "--dataset", "chem", "--out", "cut",
                    "--max-new-tokens", "64", "--device", "cpu")
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-2:] == [
        "cut: the finished predictions are kept; the same command continues after them",
        "Error: interrupted"]
    assert 1 <= len(predictions.read_text().splitlines()) < 10
    assert json.loads(Path("cut/eval_run.json").read_text())["status"] == "interrupted"


def test_lf_dir_finds_the_dataset_and_verbose_shows_transformers_output(
        invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    """`--lf-dir CHECKOUT` reads CHECKOUT/data as the data commands do; transformers' own output
    (here its weight-loading bar) shows with -v only."""
    common = ["--model", str(tiny_models[0]), "--lf-dir", str(data_dir.parent), "--dataset", "chem",
              "--max-samples", "1", "--max-new-tokens", "2", "--device", "cpu"]
    quiet = invoke("eval", "run", *common, "--out", "quiet")
    assert quiet.exit_code == 0, quiet.stderr
    assert "dataset: chem (1 samples)" in quiet.stderr.splitlines()
    assert "Loading weights" not in quiet.stderr
    loud = invoke("eval", "run", *common, "--out", "loud", "-v")
    assert loud.exit_code == 0, loud.stderr
    assert "Loading weights" in loud.stderr
    assert loud.stdout == quiet.stdout


def test_pages_take_no_data_dir(invoke: Invoke, tmp_path: Path) -> None:
    for option in ("--data-dir", "--lf-dir"):
        result = invoke("eval", "run", "--model", "m", "--pages", "gt.json", "--images", ".", option, ".")
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1] == ("Error: --data-dir and --lf-dir name where --dataset is "
                                                  "registered; --pages reads its ground truth from its own file")


@pytest.mark.e2e
def test_sigterm_is_a_ctrl_c_the_record_says_interrupted_and_the_same_command_continues(
        invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    """`kill`, `timeout` or a job scheduler stop a real `glmocr-lf eval run` with SIGTERM."""
    args = ["eval", "run", "--model", str(tiny_models[0]), "--dataset", "chem", "--out", "cut",
            "--max-new-tokens", "64", "--device", "cpu"]
    predictions = Path("cut/predictions.jsonl")
    proc = subprocess.Popen([sys.executable, "-m", "glmocr_lf", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (predictions.is_file() and predictions.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-2:] == [
        "cut: the finished predictions are kept; the same command continues after them",
        "Error: interrupted by SIGTERM"]
    record = read_eval_record(Path("cut"))
    assert record is not None and (record.status, record.signal) == ("interrupted", "SIGTERM")
    done = len(predictions.read_text().splitlines())
    assert 1 <= done < 10

    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert (f"resuming: {done} of 10 samples already in cut/predictions.jsonl (the earlier run interrupted by "
            "SIGTERM)") in result.stderr.splitlines()
    assert len(predictions.read_text().splitlines()) == 10


def test_a_sigterm_that_library_code_wraps_is_still_a_stop(
        invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal lands while transformers builds a dataclass (its processor kwargs): Python turns an
    exception raised in `__set_name__` into a RuntimeError. It is still SIGTERM: exit 143, the record
    says interrupted, the finished prediction is kept (CI saw 'failed', exit 1)."""
    import os
    import signal

    from glmocr_lf.evaluation import generation

    exported_model(tmp_path)
    answering_x(monkeypatch)

    class SignalledWhileNamed:
        def __set_name__(self, owner: type, name: str) -> None:
            os.kill(os.getpid(), signal.SIGTERM)

    def generate(_loaded: object, samples: list[EvalSample], **_: object) -> Iterator[tuple[list[EvalSample], list[str]]]:
        yield [samples[0]], ["x"]
        type("MergedTypedDict", (), {"do_convert_rgb": SignalledWhileNamed()})

    monkeypatch.setattr(generation, "generate", generate)
    result = invoke("eval", "run", "--model", "merged", "--dataset", str(SAMPLE_JSON), "--max-samples", "2",
                    "--out", "out")
    assert result.exit_code == 143, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "out: the finished predictions are kept; the same command continues after them",
        "Error: interrupted by SIGTERM"]
    record = json.loads(Path("out/eval_run.json").read_text())
    assert (record["status"], record["signal"], record["error"]) == ("interrupted", "SIGTERM", None)
    assert len(Path("out/predictions.jsonl").read_text().splitlines()) == 1

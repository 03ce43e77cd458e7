"""`glmocr-lf eval run`: dataset resolution, prompt and resolution parity with LLaMA-Factory, and an
end-to-end run on a tiny GLM-OCR (real generation on CPU) followed by `eval compare`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import EVAL_SKIP_REASON

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)
from helpers import SAMPLE_IMAGES, SAMPLE_JSON, Invoke

from glmocr_lf.evaluation.generate import (
    EvalSample,
    build_prompt,
    load_samples,
    resolve_dataset,
    resolve_image_max_pixels,
)
from glmocr_lf.runtime.errors import DataError

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
    sample = EvalSample("0", None, "<image>Text Recognition:", [Path("a.png")], "x")
    assert build_prompt(sample) == ("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|>"
                                    "<|end_of_image|>Text Recognition:<|assistant|>")
    with_system = EvalSample("0", "Be exact.", "<image>Table Recognition:", [Path("a.png")], "x")
    assert build_prompt(with_system).startswith("[gMASK]<sop><|system|>\nBe exact.<|user|>\n")


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


def test_existing_predictions_need_force(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "predictions.jsonl").write_text("{}\n", encoding="utf-8")
    result = invoke("eval", "run", "--model", "m", "--dataset", str(SAMPLE_JSON),
                    "--out", "out")
    assert result.exit_code == 1
    assert result.stderr == ("Error: out/predictions.jsonl: already exists\n"
                             "Hint: pass --resume to continue it, --force to start over, or --out another "
                             "directory\n")


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


def _earlier_run(out: Path, **options: object) -> None:
    out.mkdir()
    record = {"model": "m", "adapter": None, "dataset": str(SAMPLE_JSON), "max_new_tokens": 2048,
              "repetition_penalty": 1.0, "image_max_pixels": 589824, "image_min_pixels": 1024, **options}
    (out / "eval_run.json").write_text(json.dumps(record))
    prediction = {"id": "0", "task": "text", "prompt": "<image>Code Generation:", "reference": "r",
                  "prediction": "p"}
    (out / "predictions.jsonl").write_text(json.dumps(prediction) + "\n")


def test_resume_refuses_other_options(invoke: Invoke, tmp_path: Path) -> None:
    _earlier_run(tmp_path / "out", max_new_tokens=8)
    result = invoke("eval", "run", "--model", "m", "--dataset", str(SAMPLE_JSON), "--out", "out", "--resume")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: --resume: out/eval_run.json was made with other options: max_new_tokens 8, now 2048\n"
        "Hint: resume with the same options, or pass --force to start over\n"))


def test_resume_with_every_sample_done_loads_no_model(invoke: Invoke, tmp_path: Path) -> None:
    _earlier_run(tmp_path / "out")
    with Path("out/predictions.jsonl").open("a") as handle:
        handle.write('{"id": "1", "task": "te')  # cut off by a crash: dropped, and sample 1 is not asked for
    # "m" is no model at all: the run succeeds only because nothing is left to generate
    result = invoke("eval", "run", "--model", "m", "--dataset", str(SAMPLE_JSON), "--out", "out", "--resume",
                    "--max-samples", "1")
    assert result.exit_code == 0, result.stderr
    assert "resuming: 1 of 1 samples already in out/predictions.jsonl" in result.stderr.splitlines()
    assert [json.loads(line)["id"] for line in Path("out/predictions.jsonl").read_text().splitlines()] == ["0"]
    assert json.loads(Path("out/eval_run.json").read_text())["status"] == "finished"


def test_resume_refuses_predictions_of_another_dataset(invoke: Invoke, tmp_path: Path) -> None:
    _earlier_run(tmp_path / "out")
    Path("out/predictions.jsonl").write_text(Path("out/predictions.jsonl").read_text().replace('"0"', '"x9"'))
    result = invoke("eval", "run", "--model", "m", "--dataset", str(SAMPLE_JSON), "--out", "out", "--resume")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (f"Error: --resume: out/predictions.jsonl holds ids that are not in "
                                             f"{SAMPLE_JSON} (first: 'x9')")


def test_image_max_pixels_comes_from_the_training_record(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    assert resolve_image_max_pixels(str(model), None, None) == (
        589824, "LLaMA-Factory's default; no training record found")
    (model / "preprocessor_config.json").write_text('{"image_max_pixels": 1048576}')
    assert resolve_image_max_pixels(str(model), None, None) == (
        1048576, str(model / "preprocessor_config.json"))
    (model / "glmocr_lf_export.json").write_text('{"image_max_pixels": 802816}')
    assert resolve_image_max_pixels(str(model), None, None)[0] == 802816
    run = tmp_path / "run"
    (run / "checkpoint-20").mkdir(parents=True)
    (run / "glmocr_lf_run.json").write_text('{"status": "finished", "image_max_pixels": 262144}')
    (run / "notes.yaml").write_text("image_max_pixels: 4096\n")  # a YAML beside the run is not a record
    assert resolve_image_max_pixels(str(model), run / "checkpoint-20", None) == (
        262144, str(run / "glmocr_lf_run.json"))
    assert resolve_image_max_pixels(str(model), run, 1000) == (1000, "--image-max-pixels")


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
    ours = processor(text=[build_prompt(sample)], images=[resized], return_tensors="pt",
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
        "images: at most 589824 pixels (from LLaMA-Factory's default; no training record found)",
        "decoding: greedy, repetition_penalty 1.0, max_new_tokens 8, batch size 1",
    ]
    assert result.stderr.splitlines()[-1] == "Wrote base/predictions.jsonl and base/scores.json"
    # stdout is exactly what `eval score` prints for the file
    assert result.stdout == invoke("eval", "score", "base/predictions.jsonl").stdout

    records = [json.loads(line) for line in Path("base/predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["task"], r["prompt"]) for r in records] == [
        (str(i), "Code Generation:", "<image>Code Generation:") for i in range(3)]
    assert records[0]["reference"] == "```rdkit\nClC1=CC=C(C(C2=CC=C(Cl)C=C2)C(Cl)(Cl)Cl)C=C1\n```"
    assert all(isinstance(r["prediction"], str) and r["prediction"] for r in records)
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

    result = invoke("eval", "compare", "base/predictions.jsonl",
                    "tuned/predictions.jsonl", "--out", "report.md")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote report.md"
    report = Path("report.md").read_text(encoding="utf-8")
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
        "its scores would describe an older model",
        f"Hint: merge it again: glmocr-lf export --adapter {run} --out {merged} --force",
    ]
    assert not Path("e").exists()


@pytest.mark.e2e
def test_interrupted_run_keeps_its_predictions_and_resume_finishes_it(
        invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    from glmocr_lf.evaluation.generate import RunOptions, run_evaluation

    seed0 = tiny_models[0]
    common = ["--dataset", "chem", "--max-samples", "3", "--max-new-tokens", "8", "--device", "cpu"]
    assert invoke("eval", "run", "--model", str(seed0), "--out", "whole", *common).exit_code == 0

    def stop_after_first(done: int, _total: int) -> None:
        assert len(Path("cut/predictions.jsonl").read_text().splitlines()) == done  # on disk already
        raise KeyboardInterrupt

    options = RunOptions(model=str(seed0), dataset="chem", out_dir=Path("cut"), max_samples=3,
                         max_new_tokens=8, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(options, on_progress=stop_after_first)
    assert len(Path("cut/predictions.jsonl").read_text().splitlines()) == 1

    result = invoke("eval", "run", "--model", str(seed0), "--out", "cut", "--resume", *common)
    assert result.exit_code == 0, result.stderr
    assert "resuming: 1 of 3 samples already in cut/predictions.jsonl" in result.stderr.splitlines()
    assert Path("cut/predictions.jsonl").read_text() == Path("whole/predictions.jsonl").read_text()


@pytest.mark.e2e
def test_ctrl_c_says_how_to_resume(invoke: Invoke, tiny_models: tuple[Path, Path], data_dir: Path) -> None:
    import os
    import signal
    import threading
    import time

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
        "cut/predictions.jsonl: the finished predictions are kept; the same command with --resume continues "
        "after them",
        "Error: interrupted"]
    assert 1 <= len(predictions.read_text().splitlines()) < 10

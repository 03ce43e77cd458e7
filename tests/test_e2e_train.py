"""End to end: the real llamafactory-cli trains, exports and the result reloads (tiny GLM-OCR, CPU).

No mocks: every test here starts `llamafactory-cli` through `glmocr-lf train` / `glmocr-lf export`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import SAMPLE_JSON

from glmocr_lf.cli import cli

pytestmark = pytest.mark.e2e
pytest.importorskip("llamafactory")

# Small enough for a CPU; image_max_pixels keeps every sample at <= 64 image tokens.
CPU = ["bf16=false", "cutoff_len=256", "image_max_pixels=50176", "per_device_train_batch_size=2",
       "gradient_accumulation_steps=1", "preprocessing_num_workers=1", "dataloader_num_workers=0",
       "logging_steps=1", "plot_loss=false"]
VISION_FROZEN = ("model.visual.patch_embed.", "model.visual.blocks.", "model.visual.merger.")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    return build_tiny_glm_ocr(tmp_path_factory.mktemp("models") / "tiny", with_mtp=True)


def glmocr(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr[-3000:]
    return result


def register(data_dir: Path, *extra: str) -> None:
    glmocr("data", "register", "cosyn_chemical", str(SAMPLE_JSON), "--data-dir", str(data_dir), *extra)


def weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def sample_inputs(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Text Recognition:"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with Image.open(SAMPLE_JSON.parent / "cosyn_chemical" / "1.png") as image:
        inputs = processor(text=[text], images=[image.convert("RGB")], return_tensors="pt")
    return processor, dict(inputs)


def test_init_validate_train_export_generate(tiny: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    glmocr("init", "proj", "--example")
    os.chdir("proj")
    glmocr("config", "validate", "configs/lora.yaml", "configs/full.yaml")
    train = glmocr("train", "configs/lora.yaml", f"model_name_or_path={tiny}", "max_steps=3", "save_steps=3", *CPU)
    assert "Training finished" in train.stderr
    assert any(line.startswith("step 3/3  loss ") for line in train.stderr.splitlines())
    run = Path("saves/glm-ocr/lora/sft").resolve()
    # our lines only (progress, summary); llamafactory-cli's own output goes to train.log
    assert len(train.stderr.splitlines()) <= 25, train.stderr
    assert any(re.fullmatch(r"  full log: +" + re.escape(str(run / "train.log")), line)
               for line in train.stderr.splitlines()), train.stderr
    full_log = (run / "train.log").read_text(encoding="utf-8").splitlines()
    assert len(full_log) > 100 and full_log[0].startswith("$ cd ")
    record = json.loads((run / "glmocr_lf_run.json").read_text())
    assert record["status"] == "finished" and record["exit_code"] == 0
    assert record["versions"]["llamafactory"] and record["command"].endswith("glmocr_lf_train.yaml")
    assert (run / "glmocr_lf_train.yaml").read_text().count(f"model_name_or_path: {tiny}") == 1
    assert (run / "adapter_model.safetensors").is_file()

    glmocr("export", "--adapter", str(run))
    merged = run / "merged"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (merged / name).is_file(), name
    exported = json.loads((merged / "glmocr_lf_export.json").read_text())
    assert exported["image_max_pixels"] == 50176
    # the tiny processor's own cap (50176) is already below 2 x 50176: it stays (see test_export.py)
    assert json.loads((merged / "processor_config.json").read_text())["image_processor"]["size"]["longest_edge"] == 50176

    # the base's multi-token-prediction layer is carried into the merged checkpoint
    base_w, merged_w = weights(tiny), weights(merged)
    mtp = [k for k in base_w if k.startswith("model.language_model.layers.2.")]
    assert mtp and exported["mtp_tensors_carried"] == len(mtp)
    assert all(torch.equal(base_w[k], merged_w[k]) for k in mtp)

    # merged == base + adapter on one real input
    processor, inputs = sample_inputs(merged)
    base = AutoModelForImageTextToText.from_pretrained(tiny).eval()
    with_adapter = PeftModel.from_pretrained(base, str(run)).eval()
    reloaded = AutoModelForImageTextToText.from_pretrained(merged).eval()
    with torch.no_grad():
        expected = with_adapter(**inputs).logits
        got = reloaded(**inputs).logits
        assert (expected - got).abs().max().item() < 1e-4
        output = reloaded.generate(**inputs, max_new_tokens=8, do_sample=False, min_new_tokens=1)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(processor.decode(output[0], skip_special_tokens=True), str)


def test_full_sft_freezes_vision_and_projector(tiny: Path) -> None:
    register(Path("data"))
    glmocr("config", "new", "--method", "full", "--model", str(tiny), "-o", "full.yaml",
           "--set", "output_dir=full-run", "--set", "learning_rate=1e-3")
    run = glmocr("train", "full.yaml", "max_steps=2", "save_steps=2", "val_size=0.2", "eval_strategy=steps",
                 "eval_steps=2", "per_device_eval_batch_size=2", *CPU)
    eval_line = next(line for line in run.stderr.splitlines() if line.startswith("  eval loss:"))
    assert float(eval_line.split(":")[1]) > 0  # training-time evaluation reaches the summary
    before, after = weights(tiny), weights(Path("full-run"))
    frozen = [k for k in after if k.startswith(VISION_FROZEN)]
    language = [k for k in after if k.startswith("model.language_model.")]
    assert frozen and language
    assert all(before[k].equal(after[k]) for k in frozen)
    assert any(not before[k].equal(after[k]) for k in language)

    glmocr("export", "--model", "full-run", "--out", "full-merged")
    merged = weights(Path("full-merged"))
    assert all(merged[k].equal(after[k]) for k in language)
    assert any(k.startswith("model.language_model.layers.2.") for k in merged)  # MTP carried


def test_loss_halves_on_two_samples(tiny: Path) -> None:
    register(Path("data"))
    glmocr("config", "new", "--method", "full", "--model", str(tiny), "-o", "learn.yaml",
           "--set", "output_dir=learn", "--set", "learning_rate=3e-3", "--set", "max_samples=2",
           "--set", "warmup_ratio=0.0", "--set", "lr_scheduler_type=constant")
    glmocr("train", "learn.yaml", "max_steps=30", "save_steps=1000", *CPU)
    losses = [e["loss"] for e in map(json.loads, Path("learn/trainer_log.jsonl").read_text().splitlines()) if "loss" in e]
    assert len(losses) == 30
    assert losses[-1] < losses[0] / 2, losses


def test_resume_continues_to_the_planned_step(tiny: Path, clean_env: dict[str, str]) -> None:
    register(Path("data"))
    glmocr("config", "new", "--method", "lora", "--model", str(tiny), "-o", "r.yaml", "--set", "output_dir=r")
    argv = [sys.executable, "-m", "glmocr_lf", "train", "r.yaml", "max_steps=20", "save_steps=2", *CPU]
    proc = subprocess.Popen(argv, env=clean_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not Path("r/checkpoint-2/trainer_state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: reaches llamafactory-cli through glmocr-lf
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Error: training interrupted" in stderr
    assert not Path("r/checkpoint-20").exists()

    refused = CliRunner().invoke(cli, ["train", "r.yaml", "max_steps=20", *CPU])
    assert refused.exit_code == 1 and "--resume" in refused.stderr
    resumed = glmocr("train", "r.yaml", "--resume", "max_steps=20", "save_steps=2", *CPU)
    resumed_from = int(next(line for line in resumed.stderr.splitlines()
                            if line.startswith("resuming from ")).rsplit("-", 1)[1])
    assert any(line.startswith(f"  mean train loss (steps {resumed_from + 1}-20, after the resume):")
               for line in resumed.stderr.splitlines()), resumed.stderr
    state = json.loads(Path("r/trainer_state.json").read_text())
    assert state["global_step"] == 20
    record = json.loads(Path("r/glmocr_lf_run.json").read_text())
    assert record["status"] == "finished"


def test_failing_child_ends_with_one_error_line_and_its_code(clean_env: dict[str, str], tiny: Path) -> None:
    import shutil

    register(Path("data"))
    broken = Path(shutil.copytree(tiny, "broken"))  # passes every file check; its weights do not load
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    glmocr("config", "new", "--method", "lora", "-o", "bad.yaml", "--set", "output_dir=bad",
           "--set", f"model_name_or_path={broken.resolve()}")
    proc = subprocess.run([sys.executable, "-m", "glmocr_lf", "train", "bad.yaml", "max_steps=1", *CPU],
                          env=clean_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-2].startswith("Error: training failed (exit code 1): "), lines[-2]
    assert lines[-1] == f"Hint: full output: {Path('bad/train.log').resolve()}"
    tail = lines[lines.index("last 30 lines of its output:") + 1:-2]
    assert len(tail) == 30 and all(line.startswith("  ") for line in tail)


def test_readme_cpu_offline_variant_runs_as_written(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The README's CPU/offline block, run by bash exactly as a user pastes it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- cpu-offline-variant -->\n```bash\n(.*?)```", readme, re.S)
    assert block is not None
    env = {**clean_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{clean_env.get('PATH', '')}",
           "MAKEFLAGS": ""}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.group(1)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    project = tmp_path / "my-ocr"
    assert (project / "saves/glm-ocr/lora/sft/merged/glmocr_lf_export.json").is_file()
    report = (project / "evals" / "report.md").read_text(encoding="utf-8")
    assert "Verdict" in report
    # the base was scored with the fine-tune's settings (compare would have refused otherwise)
    settings = [json.loads((project / "evals" / run / "eval_run.json").read_text())["settings"]
                for run in ("base", "finetuned")]
    assert settings[0] == settings[1] and settings[0]["image_max_pixels"] == 50176
    assert "Compared anyway" not in report
    check_html_report(project / "evals" / "report.html", tmp_path / "report.png")

    # the usual loop: train again, export again, evaluate again: the base is reused, the merge regenerated
    again = ['cd my-ocr',
             'make train-lora ARGS="model_name_or_path=$PWD/tiny bf16=false max_steps=4 cutoff_len=256 '
             'image_max_pixels=50176 --fresh"',
             'make export EXPORT_ARGS=--force',
             block.group(1).strip().splitlines()[-1]]  # the same `make eval` line
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(again)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert ("reusing: evals/base/predictions.jsonl was made from the same model, settings and dataset "
            "(--force regenerates)") in lines
    assert any(line.startswith("regenerating: the model changed (sha256 of its files ") for line in lines), lines
    assert "Reused evals/base/predictions.jsonl and evals/base/scores.json" in lines
    assert "Wrote evals/finetuned/predictions.jsonl and evals/finetuned/scores.json" in lines


def check_html_report(report: Path, screenshot: Path) -> None:
    """The report opens in a real headless Chromium: no console error, every sample's row and image
    there, a filter that works; the screenshot is left at `screenshot`."""
    from report_browser import open_report

    samples = len(re.findall(r'<article class="sample"', report.read_text(encoding="utf-8")))
    with open_report(report) as page:
        assert page.console_errors() == []
        assert len(page.visible_rows()) == samples == 2
        assert len(page.loaded_images()) == 2 and all(width > 0 for width in page.loaded_images())
        page.driver.save_screenshot(str(screenshot))
        outcomes = [row.get_attribute("data-outcome") for row in page.visible_rows()]
        page.select("filter-outcome", "unchanged")
        assert len(page.visible_rows()) == outcomes.count("unchanged")
        assert page.text("shown") == f"{outcomes.count('unchanged')} of 2 samples"
        assert page.console_errors() == []


def test_smoke_what_make_demo_runs_prints_its_stages_only(tmp_path: Path) -> None:
    """`make demo` runs `glmocr-lf smoke demo --force`: five stages, the verdict and the answer, on
    stderr; nothing of transformers' or LLaMA-Factory's own output (no weight-loading bar)."""
    proc = subprocess.run([sys.executable, "-m", "glmocr_lf", "smoke", str(tmp_path / "demo")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert proc.stdout == ""
    assert [re.sub(r"\d+\.\d{4}|\d+ s\b", "N", line) for line in lines[:-1]] == [
        "[1/5] building a tiny GLM-OCR",
        "[2/5] registering the bundled sample dataset",
        "[3/5] LoRA training for 4 steps with llamafactory-cli",
        f"      final loss N, adapter in {tmp_path / 'demo' / 'saves' / 'lora'}",
        "[4/5] exporting (merging LoRA) with llamafactory-cli export",
        "[5/5] reloading the merged model with transformers and generating",
        f"Smoke run passed in N: {tmp_path / 'demo'}",
    ]
    assert lines[-1].startswith("  generated: '")
    assert (tmp_path / "demo" / "saves" / "lora" / "merged" / "model.safetensors").is_file()

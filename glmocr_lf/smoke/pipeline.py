"""The whole pipeline on the CPU with a tiny GLM-OCR: the proof that an installation works end to end."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.runtime.constants import DATA_DIR, LF_DEFAULT_IMAGE_MIN_PIXELS
from glmocr_lf.runtime.fsutil import atomic_write_text, ensure_dir, remove_path, require_empty_dir

SMOKE_NAME = "cosyn_chemical"
# Small enough for a CPU: <= 64 image tokens per sample, 2-sample micro-batches.
SMOKE_OVERRIDES: dict[str, Any] = {
    "bf16": False, "cutoff_len": 256, "image_max_pixels": 224 * 224, "logging_steps": 1,
    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0, "learning_rate": 1.0e-3, "plot_loss": True, "report_to": "none",
}


@dataclass
class SmokeResult:
    directory: Path
    merged: Path
    answer: str
    seconds: float


def smoke_config(directory: Path, model: Path, steps: int) -> Any:
    from glmocr_lf.config import preset

    return preset("lora", model=str(model), dataset=SMOKE_NAME, overrides={
        **SMOKE_OVERRIDES, "max_steps": steps, "save_steps": steps,
        "dataset_dir": str(directory / DATA_DIR), "output_dir": str(directory / "saves" / "lora"),
    })


def generate_one(model_dir: Path, sample_json: Path, max_new_tokens: int = 16) -> str:
    """Reload an exported model with plain transformers and answer the file's first sample, as
    `eval run` does (the same loader, prompt and image resize as training)."""
    from glmocr_lf.evaluation.dataset import load_samples, resolve_dataset
    from glmocr_lf.evaluation.generation import generate, load_model

    samples = load_samples(resolve_dataset(str(sample_json), sample_json.parent), max_samples=1)[:1]
    loaded = load_model(str(model_dir), None, "cpu")
    [(_batch, [answer])] = generate(loaded, samples, batch_size=1,
                                    max_pixels=SMOKE_OVERRIDES["image_max_pixels"],
                                    min_pixels=LF_DEFAULT_IMAGE_MIN_PIXELS, max_new_tokens=max_new_tokens,
                                    repetition_penalty=1.0)
    return answer


def run_smoke(directory: Path | None, *, steps: int = 4, force: bool = False,
              on_stage: Callable[[str], None] = lambda _s: None,
              on_line: Callable[[str], None] = lambda _s: None) -> SmokeResult:
    from glmocr_lf.config.render import render_config
    from glmocr_lf.data.registry import register_dataset
    from glmocr_lf.data.report import CheckOptions
    from glmocr_lf.export.merge import ExportRequest, execute_export, plan_export
    from glmocr_lf.runtime.resources import sample_dataset
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr
    from glmocr_lf.train.plan import LaunchRequest, prepare
    from glmocr_lf.train.run import Hooks, execute

    start = time.monotonic()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="glmocr-lf-smoke-"))
    directory = directory.resolve()
    require_empty_dir(directory, force=force, hint="pass --force to reuse it")
    for stale in ("tiny-glm-ocr", "saves"):
        remove_path(directory / stale)
    ensure_dir(directory)

    on_stage("[1/5] building a tiny GLM-OCR")
    model = build_tiny_glm_ocr(directory / "tiny-glm-ocr")

    on_stage("[2/5] registering the bundled sample dataset")
    sample_json, _images = sample_dataset()
    register_dataset(SMOKE_NAME, sample_json, directory / DATA_DIR, force=True,
                     options=CheckOptions(cutoff_len=SMOKE_OVERRIDES["cutoff_len"],
                                          image_max_pixels=SMOKE_OVERRIDES["image_max_pixels"]))

    on_stage(f"[3/5] LoRA training for {steps} steps with llamafactory-cli")
    cfg = smoke_config(directory, model, steps)
    config_path = directory / "configs" / "lora.yaml"
    atomic_write_text(config_path, render_config(cfg)[0])
    plan = prepare(LaunchRequest(config=config_path, resume="fresh"))
    summary = execute(plan, Hooks(on_line=on_line))
    loss = "-" if summary.final_loss is None else f"{summary.final_loss:.4f}"
    on_stage(f"      final loss {loss}, adapter in {summary.output_dir}")

    on_stage("[4/5] exporting (merging LoRA) with llamafactory-cli export")
    export_plan = plan_export(ExportRequest(adapter=Path(summary.output_dir), force=True))
    exported = execute_export(export_plan, on_line=on_line)

    on_stage("[5/5] reloading the merged model with transformers and generating")
    answer = generate_one(exported.out, sample_json)
    return SmokeResult(directory, exported.out, answer, time.monotonic() - start)

"""The vendor's two GLM-OCR recipes (examples/vendor/), value for value, plus deliberate differences.

Deliberate differences (README § Presets lists them with the reason):
- `dataset_dir: data` is explicit, so the config does not depend on LLaMA-Factory's CWD default;
  `glmocr-lf train` resolves it to an absolute path.
- `image_max_pixels: 589824` is explicit (LLaMA-Factory's silent default), so the training resolution
  is visible and carried into the exported model.
"""

from __future__ import annotations

from typing import Any

from glmocr_lf.config.load import from_flat
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.runtime.constants import DATA_DIR, HF_MODEL_ID, LF_DEFAULT_IMAGE_MAX_PIXELS
from glmocr_lf.runtime.constants import METHODS as METHODS
from glmocr_lf.runtime.constants import Method as Method

_COMMON_HEAD: dict[str, Any] = {"model_name_or_path": HF_MODEL_ID, "trust_remote_code": True}

_VENDOR: dict[str, dict[str, Any]] = {
    "full": {
        **_COMMON_HEAD,
        "stage": "sft", "do_train": True, "finetuning_type": "full",
        "freeze_vision_tower": True, "freeze_multi_modal_projector": True,
        "freeze_language_model": False,
        "output_dir": "saves/glm-ocr/full/sft",
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "learning_rate": 1.0e-5,
    },
    "lora": {
        **_COMMON_HEAD,
        "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 8, "lora_target": "all",
        "output_dir": "saves/glm-ocr/lora/sft",
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "learning_rate": 1.0e-4,
    },
}

_VENDOR_SHARED: dict[str, Any] = {
    "dataset": "cosyn_chemical", "template": "glm_ocr", "cutoff_len": 2048, "max_samples": 1000,
    "preprocessing_num_workers": 16, "dataloader_num_workers": 4,
    "logging_steps": 10, "save_steps": 500, "plot_loss": True, "overwrite_output_dir": True,
    "save_only_model": False, "report_to": "none",
    "num_train_epochs": 3.0, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "bf16": True,
    "ddp_timeout": 180000000, "resume_from_checkpoint": None,
}

DELIBERATE: dict[str, Any] = {"dataset_dir": DATA_DIR, "image_max_pixels": LF_DEFAULT_IMAGE_MAX_PIXELS}


def vendor_values(method: Method) -> dict[str, Any]:
    """The vendor YAML's values (what examples/vendor/glm_ocr_<method>_sft.yaml says)."""
    return {**_VENDOR[method], **_VENDOR_SHARED}


def preset(method: Method, *, model: str | None = None, dataset: str | None = None,
           overrides: dict[str, Any] | None = None) -> TrainConfig:
    values = {**vendor_values(method), **DELIBERATE}
    if model:
        values["model_name_or_path"] = model
    if dataset:
        values["dataset"] = dataset
    if overrides:
        values.update(overrides)
    return from_flat(values, source=f"preset {method}")

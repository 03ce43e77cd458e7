"""Typed LLaMA-Factory training config for GLM-OCR, in LLaMA-Factory's own sections.

A field left unset means "LLaMA-Factory's default applies" and is not written to the YAML. The keys
a GLM-OCR fine-tune needs are modelled here; every other key the installed LLaMA-Factory accepts is
checked against its own argument table (config/lfkeys.py) and carried in `passthrough`, unchanged.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from glmocr_lf.runtime.constants import DATASET_NAME_PATTERN, DATASET_NAME_RULE

SECTION_ORDER = ("model", "method", "dataset", "output", "train", "eval")
# Keys that could not be checked (no training stack here) are carried under this pseudo-section.
UNCHECKED = "other"

LrScheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay",
]
Reporter = Literal["none", "wandb", "tensorboard", "swanlab", "mlflow", "trackio", "all"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    model_name_or_path: str = Field(
        description="HF id (zai-org/GLM-OCR), ModelScope id (ZhipuAI/GLM-OCR) or local directory",
        min_length=1,
    )
    adapter_name_or_path: str | None = Field(None, description="LoRA adapter(s) to load, comma-separated")
    trust_remote_code: bool | None = Field(None, description="harmless for GLM-OCR, which is native in transformers >= 5.1")
    cache_dir: str | None = Field(None, description="where downloaded models are cached")
    model_revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] | None = Field(
        None, description="attention kernel; auto resolves to SDPA")
    image_max_pixels: int | None = Field(
        None, gt=0, description="images are downscaled to at most this many pixels (LF default 589824 = 768x768)")
    image_min_pixels: int | None = Field(
        None, gt=0, description="images are upscaled to at least this many pixels (LF default 1024)")
    disable_gradient_checkpointing: bool | None = Field(
        None, description="LLaMA-Factory checkpoints activations unless this is true")
    torch_compile: bool | None = Field(None, description="compile the model with torch.compile")


class MethodSection(_Section):
    stage: Literal["sft"] | None = Field(None, description="training stage; glmocr-lf supports sft")
    do_train: bool | None = Field(None, description="run training")
    finetuning_type: Literal["lora", "full"] | None = Field(None, description="lora (LF default) or full")
    freeze_vision_tower: bool | None = Field(None, description="freeze the CogViT encoder (LF default true)")
    freeze_multi_modal_projector: bool | None = Field(None, description="freeze the MLP merger (LF default true)")
    freeze_language_model: bool | None = Field(None, description="freeze the GLM decoder (LF default false)")
    lora_rank: int | None = Field(None, gt=0, description="LoRA rank")
    lora_alpha: int | None = Field(None, gt=0, description="LoRA scale (LF default 2 x rank)")
    lora_dropout: float | None = Field(None, ge=0, lt=1, description="dropout on the LoRA path")
    lora_target: str | None = Field(None, min_length=1, description="modules to adapt: all, or a comma list")
    additional_target: str | None = Field(None, description="extra modules trained and saved in full")
    use_rslora: bool | None = Field(None, description="rank-stabilised LoRA scaling")
    use_dora: bool | None = Field(None, description="weight-decomposed LoRA")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config (needs torchrun)")


class DatasetSection(_Section):
    dataset: str | None = Field(None, description="dataset name(s) from dataset_info.json, comma-separated")
    eval_dataset: str | None = Field(None, description="evaluation dataset name(s)")
    dataset_dir: str | None = Field(None, description="folder holding dataset_info.json")
    media_dir: str | None = Field(None, description="base of relative image paths (default: dataset_dir)")
    template: str | None = Field(None, description="chat template; must be glm_ocr")
    cutoff_len: int | None = Field(None, gt=0, description="max tokens per sample, image tokens included")
    max_samples: int | None = Field(None, gt=0, description="use the first N samples of each dataset")
    train_on_prompt: bool | None = Field(None, description="not supported by the glm_ocr template")
    overwrite_cache: bool | None = Field(None, description="redo preprocessing instead of using the cache")
    preprocessing_num_workers: int | None = Field(None, gt=0, description="processes for tokenising")
    dataloader_num_workers: int | None = Field(None, ge=0, description="processes loading batches")
    dataloader_persistent_workers: bool | None = Field(
        None, description="keep loader processes between epochs (no restart stall each epoch)")
    tokenized_path: str | None = Field(None, description="save/load the tokenised dataset here")

    @field_validator("dataset", "eval_dataset")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        """Names from dataset_info.json, as LLaMA-Factory splits them (on commas, stripped)."""
        for name in (part.strip() for part in (value or "").split(",")):
            if "/" in name or "\\" in name or name.endswith((".json", ".jsonl")):
                raise ValueError(f"{name!r} is a file; this key takes names registered in dataset_info.json: "
                                 f"glmocr-lf data register NAME {shlex.quote(name)}, then use NAME")
            if value is not None and not re.fullmatch(DATASET_NAME_PATTERN, name):
                raise ValueError(f"{name!r}: invalid dataset name; {DATASET_NAME_RULE} (starting with a letter or digit)")
        return value


class OutputSection(_Section):
    output_dir: str | None = Field(None, min_length=1, description="where checkpoints and logs go")
    logging_steps: int | None = Field(None, gt=0, description="log every N optimizer steps")
    save_steps: int | None = Field(None, gt=0, description="checkpoint every N optimizer steps")
    save_total_limit: int | None = Field(None, gt=0, description="keep at most N checkpoints")
    plot_loss: bool | None = Field(None, description="write training_loss.png")
    overwrite_output_dir: bool | None = Field(None, description="start over in a non-empty output_dir")
    save_only_model: bool | None = Field(None, description="skip optimizer state in checkpoints (no resume)")
    report_to: Reporter | list[Reporter] | None = Field(None, description="experiment tracker")
    run_name: str | None = Field(None, description="run name shown by the tracker")


class TrainSection(_Section):
    per_device_train_batch_size: int | None = Field(None, gt=0, description="micro-batch per GPU")
    gradient_accumulation_steps: int | None = Field(None, gt=0, description="micro-batches per optimizer step")
    learning_rate: float | None = Field(None, gt=0, description="peak learning rate")
    num_train_epochs: float | None = Field(None, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, description="optimizer steps; overrides epochs when > 0")
    lr_scheduler_type: LrScheduler | None = Field(None, description="learning-rate schedule")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="warm-up as a fraction of training")
    warmup_steps: float | None = Field(None, ge=0, description="warm-up steps (a value < 1 is a ratio)")
    weight_decay: float | None = Field(None, ge=0, description="AdamW weight decay")
    max_grad_norm: float | None = Field(None, gt=0, description="gradient clipping")
    bf16: bool | None = Field(None, description="bfloat16 mixed precision (needs a bf16 GPU)")
    fp16: bool | None = Field(None, description="not for GLM models: NaN losses")
    ddp_timeout: int | None = Field(None, gt=0, description="seconds before a distributed op times out")
    resume_from_checkpoint: str | None = Field(None, description="checkpoint to resume from")
    seed: int | None = Field(None, ge=0, description="random seed")
    train_sampling_strategy: Literal["random", "sequential", "group_by_length"] | None = Field(
        None, description="sample order: random (transformers' default), sequential, or group_by_length "
        "(less padding, but batches of alike samples: measure eval loss, docs/benchmarks.md section 7)")


class EvalSection(_Section):
    val_size: float | None = Field(None, gt=0, description="hold out this fraction (< 1) or count of samples")
    per_device_eval_batch_size: int | None = Field(None, gt=0, description="eval micro-batch per GPU")
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(None, description="when to evaluate")
    eval_steps: int | None = Field(None, gt=0, description="evaluate every N steps")


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSection,
    "method": MethodSection,
    "dataset": DatasetSection,
    "output": OutputSection,
    "train": TrainSection,
    "eval": EvalSection,
}


class TrainConfig(BaseModel):
    """A complete `llamafactory-cli train` config for GLM-OCR."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: ModelSection
    method: MethodSection = Field(default_factory=MethodSection)
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    output: OutputSection = Field(default_factory=OutputSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    passthrough: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="LLaMA-Factory keys beyond the typed sections, by section, already checked "
                    "against the installed LLaMA-Factory's argument table (or UNCHECKED)")

    def passthrough_value(self, key: str, default: Any = None) -> Any:
        for values in self.passthrough.values():
            if key in values:
                return values[key]
        return default

    # -- effective values: what LLaMA-Factory will use when a key is unset ------------------------
    @property
    def finetuning_type(self) -> str:
        return self.method.finetuning_type or "lora"

    @property
    def image_max_pixels(self) -> int:
        from glmocr_lf.runtime.constants import LF_DEFAULT_IMAGE_MAX_PIXELS

        return self.model.image_max_pixels or LF_DEFAULT_IMAGE_MAX_PIXELS

    @property
    def image_min_pixels(self) -> int:
        from glmocr_lf.runtime.constants import LF_DEFAULT_IMAGE_MIN_PIXELS

        return self.model.image_min_pixels or LF_DEFAULT_IMAGE_MIN_PIXELS

    @property
    def cutoff_len(self) -> int:
        from glmocr_lf.runtime.constants import LF_DEFAULT_CUTOFF_LEN

        return self.dataset.cutoff_len or LF_DEFAULT_CUTOFF_LEN

    @property
    def packing(self) -> bool:
        """Whether samples are packed into cutoff_len-long sequences (packing or neat_packing)."""
        return bool(self.passthrough_value("packing") or self.passthrough_value("neat_packing"))

    @property
    def trackers(self) -> list[str]:
        """The experiment trackers report_to names, without none."""
        value = self.output.report_to
        names = [value] if isinstance(value, str) else list(value or [])
        return [n for n in names if n != "none"]

    def flat(self) -> dict[str, Any]:
        """The keys that were set, in section order, as LLaMA-Factory reads them (one flat mapping)."""
        out: dict[str, Any] = {}
        for values in self.sectioned().values():
            out.update(values)
        return out

    def sectioned(self) -> dict[str, dict[str, Any]]:
        """Typed keys first, then the passed-through ones, in LLaMA-Factory's section order."""
        out = {name: getattr(self, name).model_dump(exclude_unset=True) for name in SECTION_ORDER}
        for name, values in self.passthrough.items():
            out.setdefault(name, {}).update(values)
        return out


KEY_SECTION: dict[str, str] = {
    key: section for section, cls in SECTIONS.items() for key in cls.model_fields
}

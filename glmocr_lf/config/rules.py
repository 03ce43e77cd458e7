"""Cross-field rules: combinations LLaMA-Factory accepts at parse time but that fail (or silently
misbehave) later for GLM-OCR. Each message says the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from glmocr_lf.config.lfrules import lf_rule_problems
from glmocr_lf.runtime.constants import TEMPLATE
from glmocr_lf.runtime.errors import Problem

if TYPE_CHECKING:
    from glmocr_lf.config.models import TrainConfig

LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target",
             "use_rslora", "use_dora", "adapter_name_or_path")


def rule_problems(cfg: TrainConfig) -> list[Problem]:
    out: list[Problem] = []
    method = cfg.method.model_dump(exclude_unset=True)
    model_keys = cfg.model.model_dump(exclude_unset=True)
    if cfg.finetuning_type == "full":
        for key in LORA_ONLY:
            section = "model" if key == "adapter_name_or_path" else "method"
            present = model_keys if section == "model" else method
            if present.get(key) not in (None, False):
                out.append(Problem(f"{section}.{key}",
                                   "only applies to LoRA; remove it or set finetuning_type: lora"))
    if cfg.dataset.template is not None and cfg.dataset.template != TEMPLATE:
        out.append(Problem("dataset.template",
                           f"GLM-OCR needs template: {TEMPLATE} (got {cfg.dataset.template!r}); "
                           "other templates tokenise images and answers differently"))
    if cfg.train.fp16:
        out.append(Problem("train.fp16", "GLM models give NaN losses in fp16; use bf16: true on a "
                                         "bf16 GPU, or bf16: false (fp32) on the CPU"))
    if cfg.image_max_pixels < cfg.image_min_pixels:
        out.append(Problem("model.image_max_pixels",
                           f"{cfg.image_max_pixels} is smaller than image_min_pixels "
                           f"({cfg.image_min_pixels}); raise it or lower image_min_pixels"))
    if cfg.dataset.train_on_prompt:
        out.append(Problem("dataset.train_on_prompt",
                           "LLaMA-Factory refuses it for the glm_ocr template; remove it"))
    if cfg.model.flash_attn == "fa3":
        out.append(Problem("model.flash_attn", "fa3 is not implemented for GLM-OCR in LLaMA-Factory; "
                                              "use auto (SDPA) or fa2"))
    if cfg.eval.val_size is not None and cfg.dataset.eval_dataset:
        out.append(Problem("eval.val_size", "set either val_size or eval_dataset, not both"))
    if cfg.train.warmup_ratio is not None and cfg.train.warmup_steps is not None:
        out.append(Problem("train.warmup_ratio",
                           "set either warmup_ratio or warmup_steps (a value < 1 is a ratio), not both"))
    if (cfg.finetuning_type == "lora" and cfg.method.freeze_vision_tower is False
            and cfg.method.freeze_multi_modal_projector is False
            and (cfg.method.lora_target or "all") == "all"):
        out.append(Problem("method.lora_target",
                           "with the vision tower and projector unfrozen, lora_target: all also matches "
                           "the projector's LayerNorm, which PEFT cannot adapt; list the modules "
                           "(e.g. q_proj,k_proj,v_proj,o_proj,gate_up_proj,down_proj,qkv,proj) or keep "
                           "freeze_multi_modal_projector: true"))
    if cfg.method.do_train and not cfg.dataset.dataset:
        out.append(Problem("dataset.dataset", "training needs a dataset name; register one with "
                                              "`glmocr-lf data register NAME FILE`"))
    if cfg.eval.eval_strategy in ("steps", "epoch") and cfg.eval.val_size is None and not cfg.dataset.eval_dataset:
        out.append(Problem("eval.eval_strategy", "evaluation needs val_size or eval_dataset"))
    out.extend(lf_rule_problems(cfg))
    return out

"""Every GLM-OCR config rule, in one table: combinations LLaMA-Factory accepts at parse time but that
fail (or silently misbehave) later, keys that do nothing, and what a machine must have for a config.

A rule is (key, kind, check): `check` returns the message (with its fix) when the rule is broken.
Kinds: `error` refuses the config anywhere; `warning` says it does not do what it reads as;
`machine` depends on the host: a warning when validating, an error before a launch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from glmocr_lf.runtime.constants import TEMPLATE
from glmocr_lf.runtime.errors import Problem
from glmocr_lf.runtime.versions import installed, parse

if TYPE_CHECKING:
    from glmocr_lf.config.models import TrainConfig
    from glmocr_lf.runtime.host import Host

# LLaMA-Factory issue 10782 (packed mRoPE position_ids not padded to a multiple of 8), fixed after it.
PACKING_PAD_FIXED_AFTER = "0.9.5"
# Liger kernels LLaMA-Factory 0.9.5 knows (model/model_utils/liger_kernel.py): glm_ocr is not one.
LIGER_NO_GLM_OCR_UP_TO = "0.9.5"
BNB_BITS = (4, 8)
LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target",
             "use_rslora", "use_dora", "adapter_name_or_path")
# report_to value -> the module transformers needs for it (integrations/integration_utils.py)
TRACKER_MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
    "swanlab": ("swanlab",), "trackio": ("trackio",), "comet_ml": ("comet_ml",),
    "clearml": ("clearml",), "dvclive": ("dvclive",), "neptune": ("neptune",),
    "codecarbon": ("codecarbon",), "azure_ml": ("azureml",), "flyte": ("flytekit",),
    "dagshub": ("dagshub",),
}
Kind = Literal["error", "warning", "machine"]


@dataclass(frozen=True)
class Rule:
    key: str  # section.key the message is about
    kind: Literal["error", "warning"]
    check: Callable[[TrainConfig], str | None]
    reads: tuple[str, ...] = ()  # other keys it depends on: skipped while one of them is invalid


@dataclass(frozen=True)
class MachineRule:
    key: str
    check: Callable[[TrainConfig, Host], str | None]
    kind: Literal["machine"] = "machine"


def _lf_at_most(version: str) -> bool:
    """True when the installed llamafactory is <= version, or unknown (rules err on the safe side)."""
    have, limit = parse(installed("llamafactory")), parse(version)
    return have is None or limit is None or have <= limit


def _bnb(cfg: TrainConfig) -> bool:
    return (cfg.passthrough_value("quantization_bit") is not None
            and cfg.passthrough_value("quantization_method", "bnb") == "bnb")


def _lora_only(key: str, cfg: TrainConfig) -> str | None:
    section = cfg.model if key == "adapter_name_or_path" else cfg.method
    if cfg.finetuning_type == "full" and section.model_dump(exclude_unset=True).get(key) not in (None, False):
        return "only applies to LoRA; remove it or set finetuning_type: lora"
    return None


def _template(cfg: TrainConfig) -> str | None:
    if cfg.dataset.template is None or cfg.dataset.template == TEMPLATE:
        return None
    return (f"GLM-OCR needs template: {TEMPLATE} (got {cfg.dataset.template!r}); "
            "other templates tokenise images and answers differently")


def _pixels(cfg: TrainConfig) -> str | None:
    if cfg.image_max_pixels >= cfg.image_min_pixels:
        return None
    return (f"{cfg.image_max_pixels} is smaller than image_min_pixels ({cfg.image_min_pixels}); "
            "raise it or lower image_min_pixels")


def _projector_layernorm(cfg: TrainConfig) -> str | None:
    if not (cfg.finetuning_type == "lora" and cfg.method.freeze_vision_tower is False
            and cfg.method.freeze_multi_modal_projector is False and (cfg.method.lora_target or "all") == "all"):
        return None
    return ("with the vision tower and projector unfrozen, lora_target: all also matches the projector's "
            "LayerNorm, which PEFT cannot adapt; list the modules (e.g. q_proj,k_proj,v_proj,o_proj,"
            "gate_up_proj,down_proj,qkv,proj) or keep freeze_multi_modal_projector: true")


def _packing_pad(cfg: TrainConfig) -> str | None:
    if not (cfg.packing and cfg.cutoff_len % 8 and _lf_at_most(PACKING_PAD_FIXED_AFTER)):
        return None
    return (f"{cfg.cutoff_len} is not a multiple of 8: with packing, LLaMA-Factory <= {PACKING_PAD_FIXED_AFTER} "
            "crashes at the first step for mRoPE models such as GLM-OCR ('Merged position_ids shape "
            f"mismatch', LLaMA-Factory issue 10782); set cutoff_len: {max(8, cfg.cutoff_len // 8 * 8)}")


def _bnb_bits(cfg: TrainConfig) -> str | None:
    bits = cfg.passthrough_value("quantization_bit")
    if _bnb(cfg) and bits not in BNB_BITS:
        return f"bitsandbytes quantizes to 4 or 8 bits, not {bits}"
    return None


def _when(condition: Callable[[TrainConfig], object], message: str) -> Callable[[TrainConfig], str | None]:
    return lambda cfg: message if condition(cfg) else None


def _tracker(name: str, cfg: TrainConfig, host: Host) -> str | None:
    if name not in cfg.trackers or host.any_importable(TRACKER_MODULES[name]):
        return None
    return (f"{name} is not installed, so the run would fail at its first step: pip install "
            f"{TRACKER_MODULES[name][0]}, or report_to: tensorboard (local, in the train extra)")


def _machine(condition: Callable[[TrainConfig, Host], object],
             message: str) -> Callable[[TrainConfig, Host], str | None]:
    return lambda cfg, host: message if condition(cfg, host) else None


RULES: tuple[Rule | MachineRule, ...] = (
    *(Rule(f"{'model' if key == 'adapter_name_or_path' else 'method'}.{key}", "error",
           partial(_lora_only, key), reads=("finetuning_type",)) for key in LORA_ONLY),
    Rule("dataset.template", "error", _template),
    Rule("train.fp16", "error", _when(lambda c: c.train.fp16, "GLM models give NaN losses in fp16; use "
                                      "bf16: true on a bf16 GPU, or bf16: false (fp32) on the CPU")),
    Rule("model.image_max_pixels", "error", _pixels, reads=("image_min_pixels",)),
    Rule("dataset.train_on_prompt", "error", _when(lambda c: c.dataset.train_on_prompt,
                                                   "LLaMA-Factory refuses it for the glm_ocr template; remove it")),
    Rule("model.flash_attn", "error", _when(lambda c: c.model.flash_attn == "fa3", "fa3 is not implemented for "
                                            "GLM-OCR in LLaMA-Factory; use auto (SDPA) or fa2")),
    Rule("eval.val_size", "error", _when(lambda c: c.eval.val_size is not None and c.dataset.eval_dataset,
                                         "set either val_size or eval_dataset, not both"), reads=("eval_dataset",)),
    Rule("train.warmup_ratio", "error",
         _when(lambda c: c.train.warmup_ratio is not None and c.train.warmup_steps is not None,
               "set either warmup_ratio or warmup_steps (a value < 1 is a ratio), not both"), reads=("warmup_steps",)),
    Rule("method.lora_target", "error", _projector_layernorm,
         reads=("finetuning_type", "freeze_vision_tower", "freeze_multi_modal_projector")),
    Rule("dataset.dataset", "error", _when(lambda c: c.method.do_train and not c.dataset.dataset,
                                           "training needs a dataset name; register one with "
                                           "`glmocr-lf data register NAME FILE`"), reads=("do_train",)),
    Rule("eval.eval_strategy", "error",
         _when(lambda c: c.eval.eval_strategy in ("steps", "epoch") and c.eval.val_size is None
               and not c.dataset.eval_dataset, "evaluation needs val_size or eval_dataset"),
         reads=("val_size", "eval_dataset")),
    Rule("dataset.cutoff_len", "error", _packing_pad, reads=("packing", "neat_packing")),
    Rule("model.quantization_bit", "error",
         _when(lambda c: c.passthrough_value("quantization_bit") is not None and c.finetuning_type == "full",
               "quantization (QLoRA) only works with LoRA: remove it or set finetuning_type: lora"),
         reads=("finetuning_type",)),
    Rule("model.quantization_bit", "error", _bnb_bits, reads=("quantization_method",)),
    Rule("model.enable_liger_kernel", "warning",
         _when(lambda c: c.passthrough_value("enable_liger_kernel") and _lf_at_most(LIGER_NO_GLM_OCR_UP_TO),
               f"does nothing for GLM-OCR: LLaMA-Factory <= {LIGER_NO_GLM_OCR_UP_TO} has no Liger kernel for "
               "glm_ocr (it logs 'Current model does not support liger kernel.') but still requires the "
               "liger-kernel package; remove it")),
    Rule("dataset.packing", "warning",
         lambda c: (f"packing drops every sample longer than cutoff_len - 1 ({c.cutoff_len - 1} tokens) instead "
                    "of truncating it; `glmocr-lf train` counts them in the data check (`glmocr-lf data stats "
                    "NAME` shows the token lengths)") if c.packing else None),
    MachineRule("model.flash_attn",
                lambda c, h: f"{broken}: use auto or sdpa"
                if c.model.flash_attn == "fa2" and (broken := h.stack.fa2_broken()) else None),
    MachineRule("train.bf16", _machine(lambda c, h: c.train.bf16 and not h.has_bf16_gpu,
                                       "this machine has no GPU with bf16 (compute capability >= 8.0); training "
                                       "here would fail: set bf16: false to train in fp32")),
    MachineRule("model.quantization_bit", _machine(lambda c, h: _bnb(c) and not h.any_importable(("bitsandbytes",)),
                                                   "needs the bitsandbytes package: pip install bitsandbytes")),
    MachineRule("model.quantization_bit", _machine(lambda c, h: _bnb(c) and not h.gpus,
                                                   "bitsandbytes quantization needs a CUDA GPU; remove "
                                                   "quantization_bit to train on the CPU")),
    MachineRule("model.enable_liger_kernel",
                _machine(lambda c, h: c.passthrough_value("enable_liger_kernel")
                         and not h.any_importable(("liger_kernel",)),
                         "LLaMA-Factory requires the liger-kernel package for it: pip install liger-kernel, "
                         "or remove it")),
    *(MachineRule("output.report_to", partial(_tracker, name)) for name in TRACKER_MODULES),
)


def rule_problems(cfg: TrainConfig, kind: Literal["error", "warning"] = "error",
                  invalid: Iterable[str] = ()) -> list[Problem]:
    """The config rules of `kind` that `cfg` breaks; rules reading a key in `invalid` (its value was
    refused, so `cfg` holds it unset) are skipped rather than misreport it."""
    skip = set(invalid)
    return [Problem(rule.key, message) for rule in RULES
            if isinstance(rule, Rule) and rule.kind == kind
            and not skip & {rule.key.rpartition(".")[2], *rule.reads} and (message := rule.check(cfg))]


def machine_problems(cfg: TrainConfig, host: Host) -> list[Problem]:
    """What `host` lacks for `cfg`: a warning when validating, an error before a launch."""
    return [Problem(rule.key, message) for rule in RULES
            if isinstance(rule, MachineRule) and (message := rule.check(cfg, host))]

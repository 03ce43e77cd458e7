"""GLM-OCR rules for the LLaMA-Factory keys beyond our typed sections (packing, liger kernel,
quantization, trackers). Each message says why and what to do; each rule has a test."""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING

from glmocr_lf.runtime.errors import Problem
from glmocr_lf.runtime.versions import installed, parse

if TYPE_CHECKING:
    from glmocr_lf.config.models import TrainConfig
    from glmocr_lf.runtime.machine import Gpu

# LLaMA-Factory issue 10782 (packed mRoPE position_ids not padded to a multiple of 8), fixed after it.
PACKING_PAD_FIXED_AFTER = "0.9.5"
# Liger kernels LLaMA-Factory 0.9.5 knows (model/model_utils/liger_kernel.py): glm_ocr is not one.
LIGER_NO_GLM_OCR_UP_TO = "0.9.5"
BNB_BITS = (4, 8)
# report_to value -> the module transformers needs for it (integrations/integration_utils.py)
TRACKER_MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
    "swanlab": ("swanlab",), "trackio": ("trackio",), "comet_ml": ("comet_ml",),
    "clearml": ("clearml",), "dvclive": ("dvclive",), "neptune": ("neptune",),
    "codecarbon": ("codecarbon",), "azure_ml": ("azureml",), "flyte": ("flytekit",),
    "dagshub": ("dagshub",),
}


def _lf_at_most(version: str) -> bool:
    """True when the installed llamafactory is <= version, or unknown (rules err on the safe side)."""
    have, limit = parse(installed("llamafactory")), parse(version)
    return have is None or limit is None or have <= limit


def packing(cfg: TrainConfig) -> bool:
    return bool(cfg.passthrough_value("packing") or cfg.passthrough_value("neat_packing"))


def trackers(cfg: TrainConfig) -> list[str]:
    """report_to as a list, without none."""
    value = cfg.output.report_to
    names = [value] if isinstance(value, str) else list(value or [])
    return [n for n in names if n != "none"]


def lf_rule_problems(cfg: TrainConfig) -> list[Problem]:
    """Errors: LLaMA-Factory would refuse the config, or crash on it after loading the model."""
    out: list[Problem] = []
    if packing(cfg) and cfg.cutoff_len % 8 and _lf_at_most(PACKING_PAD_FIXED_AFTER):
        fixed = max(8, cfg.cutoff_len // 8 * 8)
        out.append(Problem("dataset.cutoff_len", (
            f"{cfg.cutoff_len} is not a multiple of 8: with packing, LLaMA-Factory <= "
            f"{PACKING_PAD_FIXED_AFTER} crashes at the first step for mRoPE models such as GLM-OCR "
            f"('Merged position_ids shape mismatch', LLaMA-Factory issue 10782); set cutoff_len: {fixed}")))
    bits = cfg.passthrough_value("quantization_bit")
    if bits is not None:
        if cfg.finetuning_type == "full":
            out.append(Problem("model.quantization_bit", "quantization (QLoRA) only works with LoRA: "
                                                         "remove it or set finetuning_type: lora"))
        method = cfg.passthrough_value("quantization_method", "bnb")
        if method == "bnb" and bits not in BNB_BITS:
            out.append(Problem("model.quantization_bit", f"bitsandbytes quantizes to 4 or 8 bits, not {bits}"))
    return out


def lf_rule_warnings(cfg: TrainConfig, unchecked_reason: str = "") -> list[Problem]:
    """Warnings: the config works, but not as its keys suggest; keys we could not check, and why."""
    from glmocr_lf.config.models import KEY_SECTION, UNCHECKED

    out: list[Problem] = []
    for key in cfg.passthrough.get(UNCHECKED, {}):
        near = difflib.get_close_matches(key, list(KEY_SECTION), n=1, cutoff=0.6)
        hint = f"; did you mean '{near[0]}' ({KEY_SECTION[near[0]]} section)?" if near else ""
        out.append(Problem(key, f"not checked: install the training stack to check {key} "
                                f"({unchecked_reason}){hint}"))
    if cfg.passthrough_value("enable_liger_kernel") and _lf_at_most(LIGER_NO_GLM_OCR_UP_TO):
        out.append(Problem("model.enable_liger_kernel", (
            f"does nothing for GLM-OCR: LLaMA-Factory <= {LIGER_NO_GLM_OCR_UP_TO} has no Liger kernel "
            "for glm_ocr (it logs 'Current model does not support liger kernel.') but still requires "
            "the liger-kernel package; remove it")))
    if packing(cfg):
        out.append(Problem("dataset.packing", (
            f"packing drops every sample longer than cutoff_len - 1 ({cfg.cutoff_len - 1} tokens) "
            "instead of truncating it; `glmocr-lf train` counts them in the data check "
            "(`glmocr-lf data stats NAME` shows the token lengths)")))
    return out


def lf_machine_problems(cfg: TrainConfig, gpus: tuple[Gpu, ...]) -> list[Problem]:
    """What this machine lacks for the config: a warning when validating, an error at launch."""
    out: list[Problem] = []
    bits = cfg.passthrough_value("quantization_bit")
    if bits is not None and cfg.passthrough_value("quantization_method", "bnb") == "bnb":
        if not _importable(("bitsandbytes",)):
            out.append(Problem("model.quantization_bit", "needs the bitsandbytes package: "
                                                         "pip install bitsandbytes"))
        if not gpus:
            out.append(Problem("model.quantization_bit", "bitsandbytes quantization needs a CUDA GPU; "
                                                         "remove quantization_bit to train on the CPU"))
    if cfg.passthrough_value("enable_liger_kernel") and not _importable(("liger_kernel",)):
        out.append(Problem("model.enable_liger_kernel", "LLaMA-Factory requires the liger-kernel "
                                                        "package for it: pip install liger-kernel, or remove it"))
    for name in trackers(cfg):
        modules = TRACKER_MODULES.get(name)
        if modules and not _importable(modules):
            out.append(Problem("output.report_to", f"{name} is not installed, so the run would fail at "
                                                   f"its first step: pip install {modules[0]}, or "
                                                   "report_to: tensorboard (local, in the train extra)"))
    return out


def _importable(modules: Iterable[str]) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in modules)


def packing_drop_note(cfg: TrainConfig, dataset: str, tokens: Iterable[int | None]) -> str | None:
    """The data check's count of samples that packing drops (LLaMA-Factory: 'Dropped lengthy
    example'); token counts are the check's estimate, image tokens included."""
    if not packing(cfg):
        return None
    dropped = sum(1 for t in tokens if t is not None and t > cfg.cutoff_len - 1)
    if not dropped:
        return None
    return (f"dataset {dataset}: packing will drop {dropped} sample(s) longer than "
            f"{cfg.cutoff_len - 1} tokens (cutoff_len - 1) instead of truncating them; raise "
            "cutoff_len to keep them")


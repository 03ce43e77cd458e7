"""`glmocr-lf doctor`: is this machine (and this model) ready to fine-tune GLM-OCR?

Versions, GPUs (nvidia-smi) and importable modules come from one `Host` (runtime/host.py), so a
plain `doctor` never imports torch, transformers or llamafactory. Only `--model` loads the processor (that imports
transformers and torch), because "Processor was not found" is what users hit otherwise.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime.host import Host
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.modelfiles import (
    PROCESSOR_FILES,
    cached_snapshot,
    model_dir_checks,
    not_cached_fix,
    uncached_hub_model,
)
from glmocr_lf.runtime.versions import GLM_OCR_FIRST_TRANSFORMERS, PINNED, Stack

Status = Literal["ok", "warn", "error"]

# The vendor's figures for one GPU (GLM-OCR examples/finetune): LoRA fits in 8 GB, full in 24 GB.
LORA_MIN_GIB = 8
FULL_MIN_GIB = 24
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_INSTALL_STACK = "`make install` in a glmocr-lf checkout, or README § Install"


@dataclass(frozen=True)
class Finding:
    """One check: what was looked at, how it went, and how to fix it when it is not ok."""

    check: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass
class DoctorReport:
    findings: list[Finding]
    versions: dict[str, str | None] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "warn"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "versions": dict(self.versions),
            "gpus": list(self.gpus),
            "findings": [asdict(f) for f in self.findings],
        }


def _missing(dist: str, why: str, fix: str) -> Finding:
    return Finding(dist, "error", f"not installed; {why}", fix)


def check_versions(host: Host) -> list[Finding]:
    stack = host.stack
    out = [_check_llamafactory(stack), *_check_transformers(stack), _check_torch(stack)]
    out.append(_check_importable(host, "torchvision",
                                 "GLM-OCR's video processor needs it; without it AutoProcessor fails and "
                                 "LLaMA-Factory says 'Processor was not found'",
                                 "pip install torchvision (the build matching your torch)"))
    out.append(_check_importable(host, "torchaudio",
                                 "LLaMA-Factory's mm_plugin imports it for every multimodal model",
                                 "pip install --no-deps torchaudio"))
    for dist in ("peft", "trl", "datasets", "accelerate"):
        have = stack.get(dist)
        if have is None:
            out.append(_missing(dist, "LLaMA-Factory needs it to train", f"pip install {dist} ({_INSTALL_STACK})"))
        else:
            out.append(Finding(dist, "ok", have))
    deepspeed = stack.get("deepspeed")
    out.append(Finding("deepspeed", "ok", deepspeed if deepspeed else
                       "not installed (optional: only `--deepspeed` needs it; pip install deepspeed)"))
    out.append(_check_version_gate(stack))
    return out


def _check_llamafactory(stack: Stack) -> Finding:
    have = stack.get("llamafactory")
    if have is None:
        return _missing("llamafactory", "`glmocr-lf train` and `export` run llamafactory-cli",
                        f"pip install --no-deps llamafactory=={PINNED['llamafactory']} ({_INSTALL_STACK})")
    return Finding("llamafactory", "ok", have)


def _check_transformers(stack: Stack) -> list[Finding]:
    have = stack.get("transformers")
    if have is None:
        return [_missing("transformers", "it holds the GLM-OCR model and processor classes",
                         f"pip install 'transformers>={GLM_OCR_FIRST_TRANSFORMERS}'")]
    if not stack.has_glm_ocr():
        return [Finding("transformers", "error",
                        f"{have} has no glm_ocr model (first in {GLM_OCR_FIRST_TRANSFORMERS})",
                        f"pip install 'transformers>={GLM_OCR_FIRST_TRANSFORMERS}'")]
    out = [Finding("transformers", "ok", f"{have} (has glm_ocr)")]
    broken = stack.fa2_broken()
    if broken:
        out.append(Finding("flash_attn", "warn", broken,
                           "keep flash_attn: auto or sdpa in your configs (the presets do), or use "
                           "another transformers for FlashAttention-2"))
    return out


def _check_torch(stack: Stack) -> Finding:
    have = stack.get("torch")
    if have is None:
        return _missing("torch", "training needs it",
                        f"pip install torch torchvision ({_INSTALL_STACK})")
    version = stack.version("torch")
    if version is not None and version.release[:2] == (2, 9):
        return Finding("torch", "error",
                       f"{have}: LLaMA-Factory refuses torch 2.9.x for GLM-OCR (Conv3d bug)",
                       "pip install 'torch>=2.10' with its matching torchvision")
    return Finding("torch", "ok", have)


def _check_importable(host: Host, dist: str, why: str, fix: str) -> Finding:
    have = host.stack.get(dist)
    if have is None:
        return _missing(dist, why, fix)
    if not host.importable(dist):
        return Finding(dist, "error", f"{have} is in the package metadata but cannot be imported; {why}",
                       f"reinstall it: {fix}")
    return Finding(dist, "ok", have)


def _check_version_gate(stack: Stack) -> Finding:
    rejects = stack.llamafactory_rejects()
    if rejects:
        return Finding("version check", "warn",
                       "llamafactory would refuse " + "; ".join(rejects),
                       f"nothing to do for `glmocr-lf train` (it sets {C.ENV_DISABLE_VERSION_CHECK}=1 and says "
                       f"so); set it yourself to run llamafactory-cli directly")
    if stack.get("llamafactory") is None:
        return Finding("version check", "ok", "skipped: llamafactory is not installed")
    return Finding("version check", "ok",
                   f"llamafactory accepts the installed versions (no {C.ENV_DISABLE_VERSION_CHECK} needed)")


def check_gpus(found: tuple[Gpu, ...]) -> list[Finding]:
    if not found:
        return [Finding("gpu", "warn", "no NVIDIA GPU found (nvidia-smi): CPU-only, bf16 false",
                        "train on a machine with a GPU of compute capability >= 8.0; here, training "
                        "runs in fp32 on the CPU (bf16: false): slow, for small models and dry runs such as "
                        "`glmocr-lf smoke`")]
    out = []
    for gpu in found:
        name = f"gpu {gpu.index}"
        detail = (f"{gpu.name}, {gpu.memory_gib:.1f} GiB, compute capability "
                  f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}, bf16 {str(gpu.bf16).lower()}")
        if not gpu.bf16:
            out.append(Finding(name, "warn", detail + " (GLM-OCR gives NaN losses in fp16)",
                               "set bf16: false in your configs to train in fp32, or use a GPU of "
                               "compute capability >= 8.0"))
        elif gpu.memory_gib < LORA_MIN_GIB:
            out.append(Finding(name, "warn", detail + f" (LoRA needs about {LORA_MIN_GIB} GiB)",
                               "lower per_device_train_batch_size and image_max_pixels, or use a larger GPU"))
        elif gpu.memory_gib < FULL_MIN_GIB:
            out.append(Finding(name, "ok", detail + f" (LoRA; full fine-tuning needs about {FULL_MIN_GIB} GiB)"))
        else:
            out.append(Finding(name, "ok", detail))
    return out


def check_model(model: str, stack: Stack) -> list[Finding]:
    path = Path(model).expanduser()
    if path.is_dir():
        return check_model_dir(path, stack)
    if path.exists():
        return [Finding("model", "error", f"{model} is a file, not a model directory",
                        "pass the model's directory (the one holding config.json)")]
    if not _HUB_ID.match(model):
        return [Finding("model", "error", f"{model}: no such directory, and not a hub id (owner/name)",
                        f"pass a local model directory or a hub id such as {C.HF_MODEL_ID}")]
    snapshot = cached_snapshot(model)
    if snapshot is None:
        missing = uncached_hub_model(model)
        if missing:
            return [Finding("model", "error", f"{missing}; training would fail to load its tokenizer",
                            not_cached_fix(model))]
        return [Finding("model", "warn",
                        f"{model}: hub id not checked (not in the Hugging Face cache; training downloads it)",
                        f"download it first (`hf download {model}`) and run doctor again, or pass a local directory")]
    findings = check_model_dir(snapshot, stack)
    return [Finding("model", "ok", f"{model}: found in the Hugging Face cache at {snapshot}"), *findings]


def check_model_dir(path: Path, stack: Stack) -> list[Finding]:
    """modelfiles.model_dir_checks, the definition train and export refuse by, as findings; then
    the processor loaded as LLaMA-Factory loads it."""
    checks = model_dir_checks(path)
    out = [Finding(f"model.{c.part}", "ok" if c.ok else "error", c.detail, c.fix) for c in checks]
    if not (path / "config.json").is_file():
        return out  # not a model folder at all: nothing to load
    # the processor is the tokenizer with the image and video processors
    processor_missing = any(not c.ok for c in checks if c.part in (*PROCESSOR_FILES, "tokenizer"))
    out.append(_check_processor(path, stack, files_missing=processor_missing))
    return out


def _check_processor(path: Path, stack: Stack, *, files_missing: bool) -> Finding:
    if files_missing:
        return Finding("model.processor", "warn", "not loaded: processor files are missing",
                       "copy the missing files (above), then run doctor again")
    if not stack.has_glm_ocr():
        return Finding("model.processor", "warn", "not loaded: transformers with glm_ocr is not installed",
                       "fix transformers (above), then run doctor again")
    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(path))
    except Exception as exc:  # any failure here is the user's "Processor was not found"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Finding("model.processor", "error", f"AutoProcessor failed: {type(exc).__name__}: {first}",
                       "make sure torchvision is installed and the processor files come from "
                       f"{C.HF_MODEL_ID}")
    kind = type(processor).__name__
    lacking = [part for part in ("image_processor", "video_processor")
               if getattr(processor, part, None) is None]
    if lacking:
        return Finding("model.processor", "error", f"AutoProcessor returned {kind} without {' and '.join(lacking)}",
                       "install torchvision (the video processor needs it) and copy the processor files "
                       f"from {C.HF_MODEL_ID}")
    return Finding("model.processor", "ok",
                   f"{kind} with {type(processor.image_processor).__name__} and "
                   f"{type(processor.video_processor).__name__}")


def run_doctor(model: str | None = None, host: Host | None = None) -> DoctorReport:
    host = host or Host.detect()
    stack, found = host.stack, host.gpus
    findings = [*check_versions(host), *check_gpus(found)]
    if model is not None:
        findings.extend(check_model(model, stack))
    gpus = [{"index": g.index, "name": g.name, "memory_mib": g.memory_mib,
             "compute_capability": f"{g.compute_capability[0]}.{g.compute_capability[1]}", "bf16": g.bf16}
            for g in found]
    return DoctorReport(findings, dict(stack.versions), gpus)

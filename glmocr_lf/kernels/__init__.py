"""Fused kernels for GLM-OCR training: the pieces there are and how the training processes get them.

The swap itself (`glm_ocr.py`) runs inside LLaMA-Factory's training processes, started by a Python
start-up hook (`hook/sitecustomize.py`) that the launch environment puts first on PYTHONPATH with
the pieces in GLMOCR_LF_KERNELS; nothing installed is patched on disk, and the YAML written for the
run stays a plain LLaMA-Factory config. Whether a run gets them (`--kernels`, `--compile`) is
decided by planning: glmocr_lf/train/kernels.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from glmocr_lf.runtime.constants import ENV_KERNELS

KernelsMode = Literal["auto", "liger", "none"]
KERNELS_MODES: tuple[KernelsMode, ...] = ("auto", "liger", "none")
CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[CompileMode, ...] = ("auto", "on", "off")

# What each piece swaps in transformers' GLM-OCR (modeling_glm_ocr.py); measured in docs/benchmarks.md
# (sections 4 and 5). liger-kernel's Triton kernels: swiglu, rope, flce, rms_norm_liger; torch's own:
# rms_norm (fused rms_norm: less CPU time per call) and vision_attn (varlen FlashAttention).
PIECES: dict[str, str] = {
    "rms_norm": "RMSNorm (text, vision, vision q/k norms) by torch's fused rms_norm",
    "rms_norm_liger": "RMSNorm (text, vision, vision q/k norms) by liger-kernel",
    "swiglu": "SiLU-mul MLPs (text, vision)",
    "rope": "rotary embedding (text, vision)",
    "flce": "fused linear cross-entropy (no logits in training)",
    "vision_attn": "vision attention as one varlen FlashAttention call (torch), not one call per image",
    "vision_positions": "vision rotary positions from one host copy of the image grids (no syncs per image)",
    "compile": "torch.compile of the text decoder layers (one dynamic-shape graph, compiled at the first step)",
}
# flce: -4.5% step time and -20 GiB peak on top of the first three (one H200, kernels_check.py model);
# rms_norm (torch) over rms_norm_liger, vision_attn and vision_positions: fewer CPU launches and host
# syncs in a step the CPU bounds (section 5's profile)
DEFAULT_PIECES: tuple[str, ...] = ("rms_norm", "swiglu", "rope", "flce", "vision_attn", "vision_positions")


def hook_dir() -> Path:
    """The folder holding our sitecustomize.py; put first on PYTHONPATH of the training processes."""
    return Path(__file__).resolve().parent / "hook"


def parse_pieces(value: str) -> tuple[str, ...]:
    """`GLMOCR_LF_KERNELS` -> known pieces, in order; unknown names raise ValueError."""
    pieces = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in pieces if p not in PIECES]
    if "rms_norm" in pieces and "rms_norm_liger" in pieces:
        raise ValueError(f"{ENV_KERNELS}: rms_norm and rms_norm_liger are two ways of one swap; pick one")
    if unknown:
        raise ValueError(f"{ENV_KERNELS}: unknown piece(s) {', '.join(unknown)}; known: {', '.join(PIECES)}")
    return pieces

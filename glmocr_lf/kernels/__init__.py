"""Fused kernels for GLM-OCR training: whether they are on, and the launch environment that turns them on.

`decide()` is a pure function of the `--kernels` choice, the GPUs seen, the installed liger-kernel
version and the caller's environment; `with_compile()` then adds the `compile` piece for
`--compile`, from the run's length in optimizer steps. The swap itself (`glm_ocr.py`) runs inside LLaMA-Factory's
training processes, started by a Python start-up hook (`hook/sitecustomize.py`) that the
environment overlay puts first on PYTHONPATH; nothing installed is patched on disk, and the YAML
written for the run stays a plain LLaMA-Factory config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from glmocr_lf.runtime.constants import ENV_KERNELS, ENV_PYTHONPATH
from glmocr_lf.runtime.machine import Gpu

KernelsMode = Literal["auto", "liger", "none"]
KERNELS_MODES: tuple[KernelsMode, ...] = ("auto", "liger", "none")
CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[CompileMode, ...] = ("auto", "on", "off")
LIGER_DIST = "liger-kernel"
INSTALL_HINT = "pip install 'glmocr-lf[kernels]'"

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


# `compile`, one H200 (docs/benchmarks.md section 6): optimizer steps after which the one-time
# compilation (cold: the first step, and a graph for the first batch without padding) is paid back
# by the faster steps. Full 8x1: +18 s once, 262 -> 190 ms per step; LoRA 16x1: +76 s once,
# 402 -> 346 ms per step (each pair in one device call). `auto` compiles from twice that.
COMPILE_BREAK_EVEN_STEPS = {"full": 250, "lora": 1350}
COMPILE_PAYS = 2


def hook_dir() -> Path:
    """The folder holding our sitecustomize.py; put first on PYTHONPATH of the training processes."""
    return Path(__file__).resolve().parent / "hook"


@dataclass(frozen=True)
class KernelsDecision:
    on: bool
    pieces: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def parse_pieces(value: str) -> tuple[str, ...]:
    """`GLMOCR_LF_KERNELS` -> known pieces, in order; unknown names raise ValueError."""
    pieces = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in pieces if p not in PIECES]
    if "rms_norm" in pieces and "rms_norm_liger" in pieces:
        raise ValueError(f"{ENV_KERNELS}: rms_norm and rms_norm_liger are two ways of one swap; pick one")
    if unknown:
        raise ValueError(f"{ENV_KERNELS}: unknown piece(s) {', '.join(unknown)}; known: {', '.join(PIECES)}")
    return pieces


def decide(mode: KernelsMode, *, gpus: tuple[Gpu, ...], liger_version: str | None,
           environ: Mapping[str, str], pieces: tuple[str, ...] = DEFAULT_PIECES) -> KernelsDecision:
    """On or off, why, and the environment overlay for `llamafactory-cli train`.

    `auto` is on when a CUDA GPU is visible and liger-kernel is installed; `liger` insists (an
    error without liger-kernel, and a note without a GPU: it would fail in the training process);
    `none` is off. A `GLMOCR_LF_KERNELS` already in the caller's environment chooses the pieces.
    """
    if mode == "none":
        return KernelsDecision(False, notes=("kernels: off (--kernels none)",))
    if liger_version is None:
        if mode == "liger":
            from glmocr_lf.runtime.errors import LaunchError

            raise LaunchError("--kernels liger: liger-kernel is not installed", hint=INSTALL_HINT)
        return KernelsDecision(False, notes=(f"kernels: off (liger-kernel is not installed: {INSTALL_HINT})",))
    if not gpus and mode == "auto":
        return KernelsDecision(False, notes=("kernels: off (no CUDA GPU: liger-kernel's Triton kernels need one)",))
    if environ.get(ENV_KERNELS):
        pieces = parse_pieces(environ[ENV_KERNELS])
    hook = str(hook_dir())
    existing = environ.get(ENV_PYTHONPATH, "")
    env = {ENV_KERNELS: ",".join(pieces),
           ENV_PYTHONPATH: hook + (os.pathsep + existing if existing else "")}
    why = "--kernels liger" if mode == "liger" else "auto: CUDA GPU and liger-kernel present"
    notes = [f"kernels: liger-kernel {liger_version} ({why}): " + "; ".join(PIECES[p] for p in pieces),
             f"kernels: swapped inside LLaMA-Factory's processes by the start-up hook {hook}/sitecustomize.py "
             f"({ENV_PYTHONPATH}, {ENV_KERNELS}); `--kernels none` turns it off"]
    if not gpus:
        notes.append("kernels: no CUDA GPU seen here; the training process will fail without one")
    return KernelsDecision(True, pieces, env, tuple(notes))


def with_compile(decision: KernelsDecision, mode: CompileMode, *, steps: int | None, method: str,
                 unmeasured: str | None, environ: Mapping[str, str]) -> KernelsDecision:
    """Add the `compile` piece when it pays: `on`, or `auto` for a run long enough to earn back the
    compilation (`steps`: the run's optimizer steps, None if unknown) and not of a kind `auto`
    leaves alone (`unmeasured`: why, e.g. several processes).

    With `auto`, pieces named in `GLMOCR_LF_KERNELS` are kept as they are; `on` and `off` add or
    remove `compile` among them. torch.compile runs inside the kernels' start-up hook, so `on`
    needs the kernels on.
    """
    if mode == "off":
        if "compile" not in decision.pieces:
            return decision
        pieces = tuple(p for p in decision.pieces if p != "compile")
        return replace(decision, pieces=pieces, env={**decision.env, ENV_KERNELS: ",".join(pieces)},
                       notes=(*decision.notes, "compile: off (--compile off)"))
    if "compile" in decision.pieces or (mode == "auto" and decision.on and environ.get(ENV_KERNELS)):
        return decision
    if not decision.on:
        if mode == "on":
            from glmocr_lf.runtime.errors import LaunchError

            raise LaunchError("--compile on: torch.compile of the decoder layers runs in the kernels' "
                              f"start-up hook, which is off here ({'; '.join(decision.notes)})",
                              hint="drop --compile on, or run on a CUDA GPU without --kernels none")
        return decision
    kind = "lora" if method == "lora" else "full"
    pays = COMPILE_BREAK_EVEN_STEPS[kind] * COMPILE_PAYS
    where = f"{kind} fine-tuning pays back the compilation after ~{COMPILE_BREAK_EVEN_STEPS[kind]} steps"
    if mode == "auto":
        why_not = None
        if unmeasured:
            why_not = unmeasured
        elif steps is None:
            why_not = "the run's length is unknown: no max_steps, and a dataset not counted (not a local file)"
        elif steps < pays:
            why_not = f"~{steps} optimizer steps, under the {pays} it takes to be clearly worth it ({where})"
        if why_not:
            return replace(decision, notes=(*decision.notes, f"compile: off ({why_not}); --compile on to force"))
    why = "--compile on" if mode == "on" else f"auto: ~{steps} optimizer steps; {where}"
    pieces = (*decision.pieces, "compile")
    env = {**decision.env, ENV_KERNELS: ",".join(pieces)}
    note = (f"compile: on ({why}): {PIECES['compile']}; the first step and the first batch without "
            "padding take longer while it compiles; --compile off to skip")
    return replace(decision, pieces=pieces, env=env, notes=(*decision.notes, note))


def compile_unmeasured(values: Mapping[str, object], processes: int) -> str | None:
    """Why `--compile auto` stays off for this run, if it does for its kind (not its length)."""
    if processes > 1 or values.get("deepspeed"):
        return "several processes or DeepSpeed: not measured there"
    if values.get("torch_compile"):
        return "torch_compile: true in the config: LLaMA-Factory compiles the whole model already"
    return None

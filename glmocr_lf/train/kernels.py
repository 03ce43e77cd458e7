"""Planning's kernels decision: are the fused kernels on for this run, which pieces, `compile` among
them, and the environment overlay that turns them on (read by glmocr_lf/kernels' start-up hook).

`decide()` is a pure function of the `--kernels` choice, the GPUs seen, the installed liger-kernel
version and the caller's environment; `with_compile()` adds the `compile` piece for `--compile`
from the run's final values (its length in optimizer steps). What cannot be done is a problem in
the decision, reported with every other problem before launch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.kernels import (
    DEFAULT_PIECES,
    PIECES,
    CompileMode,
    KernelsMode,
    hook_dir,
    parse_pieces,
)
from glmocr_lf.runtime.constants import ENV_KERNELS, ENV_PYTHONPATH
from glmocr_lf.runtime.errors import GlmocrLfError, LaunchError
from glmocr_lf.runtime.machine import Gpu

LIGER_DIST = "liger-kernel"
INSTALL_HINT = "pip install 'glmocr-lf[kernels]'"

# `compile`: optimizer steps after which the one-time compilation is paid back by the faster steps,
# measured on one H200 (docs/benchmarks.md section 6); `auto` compiles from twice that.
COMPILE_BREAK_EVEN_STEPS = {"full": 250, "lora": 1350}
COMPILE_PAYS = 2


@dataclass(frozen=True)
class KernelsDecision:
    on: bool
    pieces: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    problems: tuple[GlmocrLfError, ...] = ()  # what the choice asks for and cannot have


def decide(mode: KernelsMode, *, gpus: tuple[Gpu, ...], liger_version: str | None,
           environ: Mapping[str, str], pieces: tuple[str, ...] = DEFAULT_PIECES) -> KernelsDecision:
    """On or off, why, and the environment overlay for `llamafactory-cli train`.

    `auto` is on when a CUDA GPU is visible and liger-kernel is installed; `liger` insists (a
    problem without a CUDA GPU, refused before launch: the training process would die after the
    model load with "0 active drivers", leaving a train.log that blocks the retry; and a problem
    without liger-kernel); `none` is off. A `GLMOCR_LF_KERNELS` already in the caller's
    environment chooses the pieces.
    """
    if mode == "none":
        return KernelsDecision(False, notes=("kernels: off (--kernels none)",))
    if not gpus and mode == "liger":
        return KernelsDecision(False, problems=(LaunchError(
            "--kernels liger: this machine has no CUDA GPU (nvidia-smi lists none); liger-kernel's Triton "
            "kernels need one", hint="drop --kernels liger (auto turns the kernels off without a GPU)"),))
    if liger_version is None:
        if mode == "liger":
            return KernelsDecision(False, problems=(
                LaunchError("--kernels liger: liger-kernel is not installed", hint=INSTALL_HINT),))
        return KernelsDecision(False, notes=(f"kernels: off (liger-kernel is not installed: {INSTALL_HINT})",))
    if not gpus and mode == "auto":
        return KernelsDecision(False, notes=("kernels: off (no CUDA GPU: liger-kernel's Triton kernels need one)",))
    if environ.get(ENV_KERNELS):
        try:
            pieces = parse_pieces(environ[ENV_KERNELS])
        except ValueError as exc:
            return KernelsDecision(False, problems=(LaunchError(f"{exc} (set in the environment)", hint=(
                f"fix or unset {ENV_KERNELS} (e.g. {ENV_KERNELS}={','.join(DEFAULT_PIECES)}), "
                "or train with --kernels none")),))
    hook = str(hook_dir())
    existing = environ.get(ENV_PYTHONPATH, "")
    env = {ENV_KERNELS: ",".join(pieces),
           ENV_PYTHONPATH: hook + (os.pathsep + existing if existing else "")}
    why = "--kernels liger" if mode == "liger" else "auto: CUDA GPU and liger-kernel present"
    notes = [f"kernels: liger-kernel {liger_version} ({why}): " + "; ".join(PIECES[p] for p in pieces),
             f"kernels: swapped inside LLaMA-Factory's processes by the start-up hook {hook}/sitecustomize.py "
             f"({ENV_PYTHONPATH}, {ENV_KERNELS}); `--kernels none` turns it off"]
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
        if mode == "on" and not decision.problems:
            return replace(decision, problems=(LaunchError(
                "--compile on: torch.compile of the decoder layers runs in the kernels' start-up hook, "
                f"which is off here ({'; '.join(decision.notes)})",
                hint="drop --compile on, or run on a CUDA GPU without --kernels none"),))
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


def compile_unmeasured(cfg: TrainConfig, processes: int) -> str | None:
    """Why `--compile auto` stays off for this run, if it does for its kind (not its length)."""
    if processes > 1 or cfg.method.deepspeed:
        return "several processes or DeepSpeed: not measured there"
    if cfg.model.torch_compile:
        return "torch_compile: true in the config: LLaMA-Factory compiles the whole model already"
    return None

"""Fit a run to the machine: settings that change speed and memory, never the maths of training.

`fit_to_hardware()` reads the typed config and the plan's context (GPUs or `--memory-budget`,
processes, CPUs, the caller's environment, the data check) and the dataset files' sizes (for the
tokenised-data cache key); it changes nothing itself and returns the keys to change, an environment
overlay and one reason per change, which `train --dry-run` prints.

The rule: the config's values are the starting point. The effective batch size
(per_device_train_batch_size x gradient_accumulation_steps x processes) and the learning rate
never change, and neither does anything that shapes what is learned: sample order, batch
composition, loss weighting, precision (train_sampling_strategy is the user's or transformers'
random default: issue 20). A key the config sets explicitly among disable_gradient_checkpointing
and tokenized_path is kept, and so is an environment variable already set in the caller's
environment. What may change: the split of the effective batch between micro-batch and
accumulation, gradient checkpointing, worker counts (capped at the CPUs), the tokenised-data cache
and the training process's environment. Why each lever, with its measurements: docs/benchmarks.md,
"What `glmocr-lf train` chooses".
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.data.info import local_file, read_info
from glmocr_lf.data.resize import image_tokens
from glmocr_lf.runtime.constants import (
    DATA_DIR,
    ENV_OMP_NUM_THREADS,
    ENV_PYTORCH_CUDA_ALLOC_CONF,
    HF_DEFAULT_EPOCHS,
    HF_DEFAULT_TRAIN_BATCH,
)
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.paths import cache_dir
from glmocr_lf.train.changes import Changes
from glmocr_lf.train.context import PlanContext

# -- memory model (GiB), calibrated on an H100 with a real-dimension GLM-OCR, bf16 --------------
# Peak allocated = base + micro_batch x padded tokens x per-token activations; reserved is a few
# percent above that with expandable segments. Measured per token: 2.1-2.3 MB without gradient
# checkpointing, 0.55-0.71 MB with it; the model below is rounded up.
GIB_PER_TOKEN = {False: 2.4e-3, True: 0.8e-3}  # keyed by gradient checkpointing
# With glmocr_lf/kernels's default pieces (the fused linear cross-entropy among them), measured on
# one H200 at 1,352 padded tokens without checkpointing: LoRA 16x1 29.9 GiB reserved, full 8x1 25.3
# and 4x2 19.6 GiB (torch's fused RMSNorm keeps ~2 GiB more at 8x1 than liger's, 23.3); the logits
# (~0.6 MB per token) are never materialised. A whole epoch in random order (issue 20) peaked
# higher: full 4x2 at 1,336 tokens 20.38 GiB reserved, 0.8% over 1.4e-3's estimate; 1.45e-3 keeps
# every estimate 0.6-22% above all four (tests/test_kernels.py). With checkpointing LoRA 4x4 peaked at
# 3.2 GiB reserved; that one measurement is kept at the conservative 0.8e-3. Without the fused
# cross-entropy the plain figures above apply.
GIB_PER_TOKEN_KERNELS = {False: 1.45e-3, True: 0.8e-3}
LORA_BASE_GIB = 2.4  # bf16 weights (1.1 B parameters) + LoRA weights, grads and Adam states
TRAINED_PARAMS = {"language": 0.68e9, "vision": 0.40e9, "projector": 0.03e9}
TOTAL_PARAMS = 1.11e9
ALLOCATOR_FACTOR = 1.08  # reserved / allocated with expandable segments
CONTEXT_GIB = 0.5  # CUDA context and library workspaces, outside PyTorch's reserved memory
USABLE_FRACTION = 0.95  # of a card's memory, for other processes and the allocator's slack
# of a --memory-budget: a promise about reserved memory, kept with a margin for the estimate's
# error (samples longer than the data check counted: full 4x2 under 24 GiB reserved 24.5, kernels off)
BUDGET_FRACTION = 0.93
TEXT_ALLOWANCE = 640  # tokens of prompt and answer assumed beside the image
# Speed model: throughput of a micro-batch of b relative to a saturating one, and the cost of
# recomputation. b0 fitted to the baseline (LoRA 4 vs 16: x0.64; full 4 vs 8: x0.79).
SATURATION_BATCH = 3.5
CHECKPOINTING_SPEED = 0.75

ENV_OMP = ENV_OMP_NUM_THREADS
ENV_ALLOC = ENV_PYTORCH_CUDA_ALLOC_CONF


@dataclass(frozen=True)
class Choice:
    micro_batch: int
    accumulation: int
    checkpointing: bool
    peak_gib: float

    @property
    def speed(self) -> float:
        relative = self.micro_batch / (self.micro_batch + SATURATION_BATCH)
        return relative * (CHECKPOINTING_SPEED if self.checkpointing else 1.0)


def sample_tokens(cfg: TrainConfig) -> int:
    """Padded length assumed for a micro-batch: a full-size image plus a long answer, within cutoff."""
    longest_image = image_tokens(100_000, 100_000, cfg.image_max_pixels, cfg.image_min_pixels)
    # a square is the most tokens a pixel budget gives (up to rounding); 2 boundary tokens
    side = int(cfg.image_max_pixels ** 0.5)
    longest_image = max(longest_image, image_tokens(side, side, cfg.image_max_pixels, cfg.image_min_pixels))
    return min(cfg.cutoff_len, longest_image + 2 + TEXT_ALLOWANCE)


def base_memory_gib(cfg: TrainConfig) -> float:
    if cfg.finetuning_type != "full":
        return LORA_BASE_GIB
    trained = TRAINED_PARAMS["language"] * (not cfg.method.freeze_language_model)
    if cfg.method.freeze_vision_tower is False:
        trained += TRAINED_PARAMS["vision"]
    if cfg.method.freeze_multi_modal_projector is False:
        trained += TRAINED_PARAMS["projector"]
    # trained: fp32 weights, grads and two Adam moments; frozen: bf16
    return (16 * trained + 2 * (TOTAL_PARAMS - trained)) / 2**30 + 0.3


def estimate_peak_gib(cfg: TrainConfig, micro_batch: int, checkpointing: bool, tokens: int,
                      kernels: bool = False) -> float:
    """Peak reserved GPU memory of one training process (GiB), CUDA context excluded."""
    per_token = (GIB_PER_TOKEN_KERNELS if kernels else GIB_PER_TOKEN)[checkpointing]
    if cfg.finetuning_type == "full" and cfg.method.freeze_vision_tower is False:
        per_token *= 2  # the vision tower's activations are kept for its backward too
    return (base_memory_gib(cfg) + micro_batch * tokens * per_token) * ALLOCATOR_FACTOR


def usable_memory_gib(gpus: tuple[Gpu, ...], memory_budget_gib: float | None) -> float | None:
    if memory_budget_gib is not None:
        return memory_budget_gib * BUDGET_FRACTION - CONTEXT_GIB
    if not gpus:
        return None
    return min(g.memory_gib for g in gpus) * USABLE_FRACTION - CONTEXT_GIB


def choose(cfg: TrainConfig, per_process_batch: int, usable_gib: float, tokens: int,
           checkpointing: bool | None, kernels: bool = False) -> Choice | None:
    """The fastest (micro-batch, checkpointing) that fits; `checkpointing` fixes it if not None."""
    options = []
    for micro in (b for b in range(per_process_batch, 0, -1) if per_process_batch % b == 0):
        for ckpt in ((False, True) if checkpointing is None else (checkpointing,)):
            peak = estimate_peak_gib(cfg, micro, ckpt, tokens, kernels)
            if peak <= usable_gib:
                options.append(Choice(micro, per_process_batch // micro, ckpt, peak))
    if not options:
        return None
    return max(options, key=lambda c: (c.speed, -c.peak_gib))


def tokenized_cache_dir(values: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    """A cache folder for LLaMA-Factory's tokenised dataset, keyed by everything that shapes it.

    LLaMA-Factory loads `tokenized_path` without looking at the data again ("Loading dataset from
    disk will ignore other data arguments"), so the key holds the dataset files' sizes and mtimes;
    None when a dataset is not a local file.
    """
    names = [n.strip() for n in str(values.get("dataset") or "").split(",") if n.strip()]
    if not names:
        return None
    dataset_dir = Path(str(values.get("dataset_dir") or DATA_DIR))
    try:
        info = read_info(dataset_dir)
        files = []
        for name in names:
            path, _layout = local_file(dataset_dir, name)
            stat = path.stat()
            files.append([name, str(path.resolve()), stat.st_size, stat.st_mtime_ns, info[name]])
    except (OSError, DataError, KeyError, TypeError):
        return None
    shaping = ("model_name_or_path", "template", "cutoff_len", "max_samples", "image_max_pixels",
               "image_min_pixels", "train_on_prompt", "val_size", "eval_dataset", "media_dir", "stage",
               "seed")
    key = json.dumps({"files": files, **{k: values.get(k) for k in shaping}}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir(environ) / "tokenized" / digest


def optimizer_steps(cfg: TrainConfig, samples: int | None, processes: int) -> int | None:
    """How many optimizer steps the run will take: `max_steps` when set, else the epochs over the
    training samples (less a `val_size` hold-out) at the effective batch; None when unknown."""
    train = cfg.train
    if train.max_steps is not None and train.max_steps > 0:
        return train.max_steps
    if samples is None:
        return None
    held_out = cfg.eval.val_size or 0
    if held_out:
        samples -= int(samples * held_out) if held_out < 1 else int(held_out)
    batch = (train.per_device_train_batch_size or HF_DEFAULT_TRAIN_BATCH) \
        * (train.gradient_accumulation_steps or 1) * max(processes, 1)
    epochs = train.num_train_epochs or HF_DEFAULT_EPOCHS
    return max(0, math.ceil(math.ceil(max(samples, 0) / batch) * epochs))


def fit_to_hardware(cfg: TrainConfig, context: PlanContext) -> Changes:
    """Speed and memory settings for this machine, as changes to `cfg` with their reasons.

    From the context: the GPUs (or `--memory-budget`), this node's processes and CPUs (each node divides its own), the caller's
    environment, the longest sample the data check counted (else an upper estimate from
    `image_max_pixels` and `cutoff_len`) and whether the fused cross-entropy is on (less memory per
    token). Several nodes get no tokenised-data cache (another node could read it half-written
    from a shared home directory).
    """
    fit = Changes()
    cpus, processes = context.host.cpus, context.node_processes
    per_process = max(1, cpus // max(processes, 1))
    for key in ("preprocessing_num_workers", "dataloader_num_workers"):
        wanted = getattr(cfg.dataset, key)
        if wanted is not None and wanted > per_process:
            fit.values[key] = per_process
            fit.reasons.append(f"{key}: {wanted} -> {per_process} ({cpus} CPUs for {processes} process(es) "
                               "on this node)")
    if not context.gpus:  # a CPU run keeps its settings (--memory-budget sizes GPU memory)
        return fit
    for key, value, why in ((ENV_OMP, "1", f"preprocessing workers would each start {cpus} torch threads "
                                           "and oversubscribe the CPU"),
                            (ENV_ALLOC, "expandable_segments:True", "less fragmentation with samples of "
                                                                    "varied length")):
        if key not in context.environ:
            fit.env[key] = value
            fit.reasons.append(f"{key}={value}: {why}")
    _fit_batch(cfg, context, fit)
    _loader_and_cache(cfg, context, fit)
    return fit


def _loader_and_cache(cfg: TrainConfig, context: PlanContext, fit: Changes) -> None:
    data, values = cfg.dataset, cfg.flat()
    workers = fit.values.get("dataloader_num_workers", data.dataloader_num_workers)
    if isinstance(workers, int) and workers > 0 and data.dataloader_persistent_workers is None:
        fit.values["dataloader_persistent_workers"] = True
        fit.reasons.append("dataloader_persistent_workers: true (restarting the loader processes "
                           "stalled every epoch by ~3 s)")
    if "logging_nan_inf_filter" not in values:
        fit.values["logging_nan_inf_filter"] = False
        fit.reasons.append("logging_nan_inf_filter: false (transformers' NaN check reads each micro-batch's "
                           "loss back from the GPU, a host sync that idles the GPU every step; a NaN or "
                           "inf loss is then logged as it is instead of being left out of the average)")
    if (context.topology.nnodes == 1 and not data.tokenized_path and not data.overwrite_cache
            and not cfg.passthrough_value("streaming")):
        cache = tokenized_cache_dir(values, context.environ)  # keyed by every value, as LLaMA-Factory reads them
        if cache is not None:
            fit.values["tokenized_path"] = str(cache)
            fit.reasons.append(f"tokenized_path: {cache} (keyed by the data files and the settings "
                               "that shape tokenisation; a second run skips preprocessing)")


def _fit_batch(cfg: TrainConfig, context: PlanContext, fit: Changes) -> None:
    gpus, memory_budget_gib = context.gpus, context.memory_budget_gib
    kernels = context.fused_cross_entropy
    usable = usable_memory_gib(gpus, memory_budget_gib)
    if usable is None:
        return
    micro = cfg.train.per_device_train_batch_size or HF_DEFAULT_TRAIN_BATCH
    accumulation = cfg.train.gradient_accumulation_steps or 1
    per_process_batch = micro * accumulation
    tokens = (context.data.max_tokens if context.data else None) or sample_tokens(cfg)
    explicit = cfg.model.disable_gradient_checkpointing
    fixed_ckpt = None if explicit is None else not explicit
    where = (f"--memory-budget {memory_budget_gib:g} GiB" if memory_budget_gib is not None
             else f"{min(g.memory_gib for g in gpus):.0f} GiB {gpus[0].name}")
    best = choose(cfg, per_process_batch, usable, tokens, fixed_ckpt, kernels)
    if best is None:
        smallest = estimate_peak_gib(cfg, 1, True if fixed_ckpt is None else fixed_ckpt, tokens, kernels)
        fit.reasons.append(f"memory: even micro-batch 1 needs about {smallest + CONTEXT_GIB:.1f} GiB "
                           f"for {tokens}-token samples; {where} may not be enough (settings unchanged)")
        return
    if best.micro_batch != micro:
        fit.values["per_device_train_batch_size"] = best.micro_batch
        fit.values["gradient_accumulation_steps"] = best.accumulation
        fit.reasons.append(
            f"micro-batch {micro} x {accumulation} accumulation -> {best.micro_batch} x {best.accumulation} "
            f"(same {per_process_batch} samples per optimizer step per process; about "
            f"{best.peak_gib + CONTEXT_GIB:.1f} GiB of {where} for {tokens}-token samples)")
    if fixed_ckpt is None:
        fit.values["disable_gradient_checkpointing"] = not best.checkpointing
        fit.reasons.append(
            "gradient checkpointing: " + ("on (needed to fit " + where + ")" if best.checkpointing
                                          else "off (fits " + where + "; recomputation costs 25-50%)"))

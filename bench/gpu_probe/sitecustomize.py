"""Timing probe for bench/gpu_train.py: active only when GLMOCR_BENCH_PROBE names an output file.

Loaded by Python at start-up (this folder is put first on PYTHONPATH, also for torchrun's
children). It changes nothing LLaMA-Factory or transformers compute: it adds one TrainerCallback
that records a wall-clock time at every optimizer step (after a CUDA synchronize), counts the
samples and tokens each micro-batch carries, and writes a JSON record from rank 0 at the end.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time

_OUT = os.environ.get("GLMOCR_BENCH_PROBE")


def _patch_trainer(module):  # type: ignore[no-untyped-def]
    import torch
    from transformers import TrainerCallback

    image_token_id = int(os.environ.get("GLMOCR_BENCH_IMAGE_TOKEN_ID", "-1"))
    state = {"samples": 0, "tokens": None, "padded": 0, "image_tokens": None, "micro_batches": 0,
             "max_len": 0, "tokens_sq": None, "image_sq": None}

    class Probe(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.first_step_begin: float | None = None
            self.train_begin: float | None = None

        def on_train_begin(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            self.train_begin = time.time()

        def on_step_begin(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if self.first_step_begin is None:
                self.first_step_begin = time.time()

        def on_step_end(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.steps.append(time.time())

        def on_train_end(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if int(os.environ.get("RANK", "0")) != 0:
                return
            cuda = torch.cuda.is_available()
            record = {
                "process_start": float(os.environ.get("GLMOCR_BENCH_T0", "0")) or None,
                "train_begin": self.train_begin,
                "first_step_begin": self.first_step_begin,
                "step_end_times": self.steps,
                "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "gradient_checkpointing": bool(args.gradient_checkpointing),
                "rank0_samples": state["samples"],
                "rank0_tokens": int(state["tokens"].item()) if state["tokens"] is not None else 0,
                "rank0_image_tokens": int(state["image_tokens"].item()) if state["image_tokens"] is not None else 0,
                "rank0_padded_tokens": state["padded"],
                "rank0_tokens_sq": float(state["tokens_sq"].item()) if state["tokens_sq"] is not None else 0.0,
                "rank0_image_tokens_sq": float(state["image_sq"].item()) if state["image_sq"] is not None else 0.0,
                "rank0_micro_batches": state["micro_batches"],
                "max_padded_len": state["max_len"],
                "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0,
                "gpu": torch.cuda.get_device_name() if cuda else "cpu",
                "torch": torch.__version__,
            }
            with open(_OUT, "w") as fh:  # type: ignore[arg-type]
                json.dump(record, fh)

    trainer_cls = module.Trainer
    original_init = trainer_cls.__init__
    original_step = trainer_cls.training_step

    def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
        original_init(self, *a, **kw)
        self.add_callback(Probe())

    def training_step(self, model, inputs, *a, **kw):  # type: ignore[no-untyped-def]
        ids = inputs.get("input_ids")
        mask = inputs.get("attention_mask")
        if ids is not None:
            state["samples"] += int(ids.shape[0])
            state["padded"] += int(ids.numel())
            state["micro_batches"] += 1
            state["max_len"] = max(state["max_len"], int(ids.shape[-1]))
            rows = (mask.sum(-1) if mask is not None else torch.full((ids.shape[0],), ids.shape[-1], device=ids.device)).detach().double()
            img_rows = (ids == image_token_id).sum(-1).detach().double()
            real, img = rows.sum(), img_rows.sum()
            sq, img_sq = (rows * rows).sum(), (img_rows * img_rows).sum()
            state["tokens_sq"] = sq if state["tokens_sq"] is None else state["tokens_sq"] + sq
            state["image_sq"] = img_sq if state["image_sq"] is None else state["image_sq"] + img_sq
            state["tokens"] = real if state["tokens"] is None else state["tokens"] + real
            state["image_tokens"] = img if state["image_tokens"] is None else state["image_tokens"] + img
        return original_step(self, model, inputs, *a, **kw)

    trainer_cls.__init__ = __init__
    trainer_cls.training_step = training_step


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched(module):  # type: ignore[no-untyped-def]
            exec_module(module)
            _patch_trainer(module)

        loader.exec_module = patched  # type: ignore[method-assign]
        return spec


if _OUT:
    sys.meta_path.insert(0, _AfterImport())


def _chain_next_sitecustomize() -> None:
    """Run the sitecustomize this file shadows (the image may set NCCL safety variables there)."""
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [os.path.abspath(e) if e else "" for e in sys.path]
    # only folders after this one: another chaining hook before it (glmocr-lf's kernels) ran us
    for entry in entries[entries.index(here) + 1 if here in entries else 0:]:
        if not entry or entry == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            with open(candidate) as fh:
                code = compile(fh.read(), candidate, "exec")
            exec(code, {"__name__": "sitecustomize", "__file__": candidate})
            return


_chain_next_sitecustomize()

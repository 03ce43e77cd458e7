"""Timing probe for bench/gpu_train.py: active only when GLMOCR_BENCH_PROBE names an output file.

Loaded by Python at start-up (this folder is put first on PYTHONPATH, also for torchrun's
children). Unless GLMOCR_BENCH_BUCKETS is set, it changes nothing LLaMA-Factory or transformers
compute: it adds one TrainerCallback that records a wall-clock time at every optimizer step (after a CUDA synchronize), counts the
samples and tokens each micro-batch carries and how many torch.compile graphs exist after each
step (steps that compile are reported apart from the steady state), records each evaluation's
time span and eval_loss, and writes a JSON record from rank 0 at the end.
With GLMOCR_BENCH_PROFILE=START:COUNT it also runs torch.profiler over optimizer steps
START+1..START+COUNT on rank 0 and writes `<probe>.profile.txt`: wall time of those steps, GPU
kernel time by kind (matmul, attention, Triton, elementwise, optimizer, copies), the GPU's idle
share, and the top kernels and CPU-side ops. With GLMOCR_BENCH_BUCKETS=K the training sampler groups
samples by length only inside random buckets of K optimizer steps (a padding lever under test). With GLMOCR_BENCH_SYNCS=STEP it counts the host syncs of
optimizer step STEP+1 by call site (torch.cuda.set_sync_debug_mode) into `<probe>.syncs.txt`.
Every process that loads it also appends its launch phases to `<probe>.phases.jsonl`
(_glmocr_bench_phases.py: process start, imports, planning, tokenizer, dataset, model, trainer set-up,
first step). With GLMOCR_BENCH_STOP_AT_FIRST_STEP=1 the training process writes its record and exits
0 when the first optimizer step is about to run (a launch-only measurement: no step is computed).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time

_OUT = os.environ.get("GLMOCR_BENCH_PROBE")


def _graphs_compiled() -> int:
    """Graphs torch.compile has traced in this process (steps that compile are not steady state)."""
    dynamo = sys.modules.get("torch._dynamo.utils")
    return int(dynamo.counters["stats"]["unique_graphs"]) if dynamo is not None else 0


def _patch_trainer(module):  # type: ignore[no-untyped-def]
    import torch
    from transformers import TrainerCallback

    image_token_id = int(os.environ.get("GLMOCR_BENCH_IMAGE_TOKEN_ID", "-1"))
    state = {"samples": 0, "tokens": None, "padded": 0, "image_tokens": None, "micro_batches": 0,
             "max_len": 0, "tokens_sq": None, "image_sq": None}
    evals: list[dict[str, object]] = []  # one per Trainer.evaluate: its time span and eval_loss

    profile_at = os.environ.get("GLMOCR_BENCH_PROFILE", "")
    rank0 = int(os.environ.get("RANK", "0")) == 0

    class Probe(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.graphs: list[int] = []  # torch.compile graphs so far, after each step (0: nothing compiled)
            self.samples: list[int] = []  # samples trained so far (this rank), after each step
            self.first_step_begin: float | None = None
            self.train_begin: float | None = None
            self.prof = None
            self.prof_start = 0.0
            start, _, count = profile_at.partition(":")
            self.prof_range = (int(start), int(start) + int(count or 3)) if start and rank0 else None
            syncs_at = os.environ.get("GLMOCR_BENCH_SYNCS", "")
            self.syncs_at = int(syncs_at) if syncs_at and rank0 else None
            self.syncs: dict[str, int] = {}
            self.show = None

        def on_train_begin(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            self.train_begin = time.time()
            _phases.mark("train begin", self.train_begin)

        def on_step_begin(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if self.first_step_begin is None:
                self.first_step_begin = time.time()
                _phases.mark("first step begin", self.first_step_begin)
                if os.environ.get("GLMOCR_BENCH_STOP_AT_FIRST_STEP") == "1":
                    self.on_train_end(args, st, control)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(0)
            if self.prof_range and st.global_step == self.prof_range[0] and self.prof is None:
                torch.cuda.synchronize()
                acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
                self.prof = torch.profiler.profile(activities=acts)
                self.prof.__enter__()
                self.prof_start = time.time()
            if self.syncs_at is not None and st.global_step == self.syncs_at:
                import traceback
                import warnings

                self.show = warnings.showwarning

                def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
                    if "synchroniz" not in str(message):
                        return self.show(message, category, filename, lineno, file, line)
                    frames = [f for f in traceback.extract_stack()[:-1]
                              if "/torch/" not in f.filename and "warnings" not in f.filename]
                    site = " <- ".join(f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}"
                                       for f in frames[-3:][::-1])
                    self.syncs[site] = self.syncs.get(site, 0) + 1
                    return None

                warnings.showwarning = show
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.steps.append(time.time())
            if len(self.steps) == 1:
                _phases.mark("first step end", self.steps[0])
            self.graphs.append(_graphs_compiled())
            self.samples.append(state["samples"])
            if self.show is not None and self.syncs_at is not None and st.global_step == self.syncs_at + 1:
                import warnings

                torch.cuda.set_sync_debug_mode(0)
                warnings.showwarning = self.show
                self.show = None
                rows = sorted(self.syncs.items(), key=lambda kv: -kv[1])
                with open(f"{_OUT}.syncs.txt", "w") as fh:
                    fh.write(f"{sum(self.syncs.values())} host syncs in optimizer step {self.syncs_at + 1}\n")
                    fh.writelines(f"{n:5d}  {site}\n" for site, n in rows)
            if self.prof is not None and self.prof_range and st.global_step == self.prof_range[1]:
                wall = time.time() - self.prof_start
                self.prof.__exit__(None, None, None)
                _write_profile(self.prof, wall, self.prof_range[1] - self.prof_range[0])
                self.prof = None

        def on_train_end(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if int(os.environ.get("RANK", "0")) != 0:
                return
            cuda = torch.cuda.is_available()
            record = {
                "process_start": float(os.environ.get("GLMOCR_BENCH_T0", "0")) or None,
                "train_begin": self.train_begin,
                "first_step_begin": self.first_step_begin,
                "step_end_times": self.steps,
                "graphs_after_step": self.graphs,
                "samples_after_step": self.samples,
                "evals": evals,
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
        start = time.time()
        original_init(self, *a, **kw)
        self.add_callback(Probe())
        _phases.span("trainer init", start, time.time())

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

    original_evaluate = trainer_cls.evaluate

    def evaluate(self, *a, **kw):  # type: ignore[no-untyped-def]
        start = time.time()
        metrics = original_evaluate(self, *a, **kw)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        evals.append({"start": start, "end": time.time(), "step": self.state.global_step,
                      "epoch": self.state.epoch, "eval_loss": metrics.get("eval_loss")})
        return metrics

    trainer_cls.__init__ = __init__
    trainer_cls.training_step = training_step
    trainer_cls.evaluate = evaluate
    buckets = int(os.environ.get("GLMOCR_BENCH_BUCKETS", "0") or 0)
    if buckets:
        _patch_sampler(trainer_cls, buckets)


def _patch_sampler(trainer_cls, buckets: int) -> None:  # type: ignore[no-untyped-def]
    """A padding lever under test (issue 20): group by length only inside small random buckets of
    `buckets` optimizer steps' samples, reshuffled every epoch (transformers' length grouping with
    a small mega-batch; its own default takes up to 50 steps' worth)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    class BucketSampler(torch.utils.data.Sampler):  # type: ignore[type-arg]
        def __init__(self, lengths: list[int], batch: int, seed: int) -> None:
            self.lengths, self.batch, self.seed, self.epoch = lengths, batch, seed, 0

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self):  # type: ignore[no-untyped-def]
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            self.epoch += 1
            return iter(get_length_grouped_indices(self.lengths, self.batch, mega_batch_mult=buckets,
                                                   generator=generator))

    original = trainer_cls._get_train_sampler

    def _get_train_sampler(self, train_dataset=None):  # type: ignore[no-untyped-def]
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is None or "input_ids" not in getattr(dataset, "column_names", ()):
            return original(self, train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return BucketSampler(lengths, batch, self.args.seed)

    trainer_cls._get_train_sampler = _get_train_sampler


def _kind(name: str) -> str:
    n = name.lower()
    if "multi_tensor" in n or "adam" in n:
        return "optimizer"
    if any(k in n for k in ("flash", "fmha", "attention", "cudnn")):
        return "attention"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas", "matmul", "splitk")):
        return "matmul"
    if "memcpy" in n or "memset" in n:
        return "copy/memset"
    if any(k in n for k in ("_kernel", "triton")) and not n.startswith("void at::"):
        return "triton (liger)"
    if "reduce" in n:
        return "reduction"
    if "elementwise" in n or "vectorized" in n or "unrolled" in n:
        return "elementwise"
    return "other"


def _write_profile(prof, wall: float, steps: int) -> None:  # type: ignore[no-untyped-def]
    """Summarise a torch.profiler run of `steps` optimizer steps that took `wall` seconds."""
    events = prof.key_averages()
    kernels = [e for e in events if getattr(e, "self_device_time_total", 0) > 0 and e.device_type.name == "CUDA"]
    kinds = {e.key: _kind(e.key) for e in kernels}
    by_kind: dict[str, float] = {}
    launches: dict[str, int] = {}
    for e in kernels:
        by_kind[kinds[e.key]] = by_kind.get(kinds[e.key], 0.0) + e.self_device_time_total / 1e3
        launches[kinds[e.key]] = launches.get(kinds[e.key], 0) + e.count
    busy = sum(by_kind.values())
    lines = [f"profiled {steps} optimizer steps: wall {1e3 * wall / steps:.1f} ms/step, GPU kernels "
             f"{busy / steps:.1f} ms/step, GPU idle {100 * (1 - busy / 1e3 / wall):.0f}%"]
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind:16s} {ms / steps:8.1f} ms/step  {100 * ms / busy:5.1f}%  "
                     f"{launches[kind] // steps} launches/step")
    lines.append("top kernels (ms/step, calls/step, kind):")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:30]:
        lines.append(f"  {e.self_device_time_total / 1e3 / steps:7.2f} {e.count // steps:6d}  "
                     f"{kinds[e.key]:14s} {e.key[:110]}")
    lines.append("top CPU ops by self CPU time (ms/step, calls/step):")
    cpu = [e for e in events if e.self_cpu_time_total > 0]
    for e in sorted(cpu, key=lambda e: -e.self_cpu_time_total)[:30]:
        lines.append(f"  {e.self_cpu_time_total / 1e3 / steps:7.2f} {e.count // steps:6d}  {e.key[:100]}")
    with open(f"{_OUT}.profile.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")


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
    import _glmocr_bench_phases as _phases

    _phases.install()
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

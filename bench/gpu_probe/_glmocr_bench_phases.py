"""Launch phases for bench/gpu_train.py: wall-clock marks and spans, one JSON line each, appended to
`<probe>.phases.jsonl` by every process that loads the probe (glmocr-lf's own process, the
llamafactory-cli process, torchrun's workers).

It changes nothing computed: a few functions are wrapped, when their module is first imported, by a
wrapper that records the time before and after the call and returns what the call returned:
glmocr-lf's planning (`plan.prepare`, the data check, the key table, the host probe) and
LLaMA-Factory's launch (`run_exp`, argument parsing, tokenizer/processor load, dataset load and
tokenisation, model load). The end of the first imports of torch, transformers, datasets and
LLaMA-Factory's trainer modules is marked too. The Trainer side (train begin, first step) is marked
by the probe's TrainerCallback through `mark()`.
"""

from __future__ import annotations

import functools
import importlib.abc
import json
import os
import sys
import time
from typing import Any

_OUT = os.environ.get("GLMOCR_BENCH_PROBE")
PATH = f"{_OUT}.phases.jsonl" if _OUT else None

# module -> functions whose calls are timed: (attribute, span name); "Class.method" for a method
SPANS: dict[str, tuple[tuple[str, str], ...]] = {
    "glmocr_lf.train.plan": (("prepare", "glmocr-lf plan"),),
    "glmocr_lf.train.datacheck": (("check_datasets", "glmocr-lf data check"),),
    "glmocr_lf.config.lfkeys": (("load_table", "glmocr-lf key table"),),
    "glmocr_lf.runtime.host": (("Host.detect", "glmocr-lf host probe"),),
    "glmocr_lf.train.run": (("execute", "glmocr-lf execute"),),
    "llamafactory.train.tuner": (("run_exp", "run_exp"),),
    "llamafactory.hparams.parser": (("get_train_args", "arguments"),),
    "llamafactory.model.loader": (("load_tokenizer", "tokenizer+processor"), ("load_model", "model load")),
    "llamafactory.data.loader": (("get_dataset", "dataset"), ("_get_merged_dataset", "dataset load"),
                                 ("_get_preprocessed_dataset", "tokenize")),
}
# the end of these modules' first import is marked ("imported NAME")
IMPORTS = ("torch", "transformers", "datasets", "peft", "trl", "llamafactory.train.tuner")


def _write(event: dict[str, Any]) -> None:
    if PATH is None:
        return
    event["pid"] = os.getpid()
    with open(PATH, "a") as fh:  # one short line per write: appends from several processes stay whole
        fh.write(json.dumps(event) + "\n")


def mark(name: str, t: float | None = None) -> None:
    _write({"event": "mark", "name": name, "t": time.time() if t is None else t})


def span(name: str, start: float, end: float) -> None:
    _write({"event": "span", "name": name, "start": start, "end": end})


def _exec_time() -> float | None:
    """When this process was started (exec), to 1/100 s: its age from /proc (start time in clock
    ticks since boot) subtracted from now; None where there is no /proc."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
        age = time.clock_gettime(clock) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError):
        return None


def _label(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """LLaMA-Factory loads and tokenises the training and the eval datasets with the same two
    functions: the eval calls pass `return_dict=` / `is_eval=True`; a call without datasets is apart."""
    if name == "dataset load":
        return ("dataset load (none)" if args and args[0] is None
                else "dataset load eval" if "return_dict" in kwargs else name)
    if name == "tokenize":
        return ("tokenize (none)" if args and args[0] is None
                else "tokenize eval" if kwargs.get("is_eval") else "tokenize train")
    return name


def _timed(func: Any, name: str) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return func(*args, **kwargs)
        finally:
            span(_label(name, args, kwargs), start, time.time())

    return wrapper


def _wrap(module: Any) -> None:
    for attr, name in SPANS.get(module.__name__, ()):
        owner, _, method = attr.rpartition(".")
        target = getattr(module, owner) if owner else module
        original = target.__dict__[method]
        if isinstance(original, classmethod):
            setattr(target, method, classmethod(_timed(original.__func__, name)))
        else:
            setattr(target, method, _timed(original, name))


class _Finder(importlib.abc.MetaPathFinder):
    """Asks the other finders for the module's spec and runs `_wrap` / the import mark right after
    the module's own code, before any `from module import name` elsewhere binds the original."""

    names = frozenset(SPANS) | frozenset(IMPORTS)

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def patched(module):  # type: ignore[no-untyped-def]
            exec_module(module)
            if name in SPANS:
                _wrap(module)
            if name in IMPORTS:
                mark(f"imported {name}")

        loader.exec_module = patched  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Record this process's start and wrap the timed functions as their modules load."""
    if PATH is None:
        return
    _write({"event": "process", "exec": _exec_time(), "site": time.time(), "ppid": os.getppid(),
            "rank": os.environ.get("RANK"), "argv": list(getattr(sys, "orig_argv", sys.argv))[:6],
            "t0": float(os.environ.get("GLMOCR_BENCH_T0", "0")) or None})
    sys.meta_path.insert(0, _Finder())

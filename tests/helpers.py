"""What tests share besides fixtures: paths of the bundled sample, skip markers, the in-process CLI
runner, a Hugging Face cache entry, and a fake host (tests pass one instead of patching probes)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from glmocr_lf.runtime.host import Host, find_module
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack

REPO = Path(__file__).resolve().parents[1]
# The bundled copy of ../shared/data/cosyn_chemical* (10 images from GLM-OCR's fine-tuning example).
SAMPLE_JSON = REPO / "examples" / "cosyn_chemical.json"
SAMPLE_IMAGES = REPO / "examples" / "cosyn_chemical"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


STACK_MISSING = _missing("torch", "transformers", "llamafactory", "peft")
needs_stack = pytest.mark.skipif(
    bool(STACK_MISSING), reason=f"needs the training stack ({', '.join(STACK_MISSING)} not installed): make install")
EVAL_MISSING = _missing("rapidfuzz", "apted", "lxml", "jinja2", "matplotlib")
EVAL_SKIP_REASON = f"needs the eval extra ({', '.join(EVAL_MISSING)} not installed): pip install '.[eval]'"

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
STACK_BIN = "/stack/bin"


def fake_host(gpus: tuple[Gpu, ...] = (), *, stack: Stack | None = None, cpus: int = 16,
              missing: tuple[str, ...] = (), dists: Mapping[str, str] | None = None,
              executables: Mapping[str, str] | None = None, importable_all: bool = False) -> Host:
    """A machine with `gpus`, the pinned stack (constraints.txt), llamafactory-cli and torchrun in
    /stack/bin, DeepSpeed importable and every other module as installed here (`importable_all`:
    every module), less `missing` (modules: not importable; executables: not found)."""
    found = {"llamafactory-cli": f"{STACK_BIN}/llamafactory-cli", "torchrun": f"{STACK_BIN}/torchrun"}
    found = {k: v for k, v in {**found, **(executables or {})}.items() if k not in missing}

    def importable(module: str) -> bool:
        return module not in missing and (importable_all or module == "deepspeed" or find_module(module))

    return Host(gpus, stack or Stack.pinned(), cpus, found, dict(dists or {}), importable)


def use_host(monkeypatch: pytest.MonkeyPatch, host: Host) -> None:
    """Commands run through the CLI see `host` (`Host.detect` is the one probe of the machine)."""
    monkeypatch.setattr(Host, "detect", classmethod(lambda cls: host))


def put_in_hf_cache(repo_id: str, files: dict[str, str]) -> Path:
    """A snapshot of `repo_id` in the Hugging Face cache under $HF_HOME (as a download leaves it)."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snapshot / name).write_text(text, encoding="utf-8")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("a" * 40)
    return snapshot


Invoke = Callable[..., Result]


def invoke(*args: str | Path, **kwargs: Any) -> Result:
    """Run `glmocr-lf ARGS` in-process; exceptions our CLI does not handle propagate (no swallowing)."""
    from glmocr_lf.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def counted_hashes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each file (FOLDER/NAME) is hashed from now on."""
    from glmocr_lf.runtime import modelfiles

    counts: Counter[str] = Counter()
    real = modelfiles.file_sha256

    def counting(path: Path) -> str:
        counts[f"{path.parent.name}/{path.name}"] += 1
        return real(path)

    monkeypatch.setattr(modelfiles, "file_sha256", counting)
    return counts

"""Shared fixtures: every test runs offline, in its own working directory, with no user state."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
# The bundled copy of ../shared/data/cosyn_chemical* (10 images from GLM-OCR's fine-tuning example).
SAMPLE_JSON = REPO / "examples" / "cosyn_chemical.json"
SAMPLE_IMAGES = REPO / "examples" / "cosyn_chemical"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


STACK_MISSING = _missing("torch", "transformers", "llamafactory", "peft")
needs_stack = pytest.mark.skipif(
    bool(STACK_MISSING), reason=f"needs the training stack ({', '.join(STACK_MISSING)} not installed): make install")
EVAL_MISSING = _missing("rapidfuzz", "apted", "lxml")
EVAL_SKIP_REASON = f"needs the eval extra ({', '.join(EVAL_MISSING)} not installed): pip install '.[eval]'"


@pytest.fixture(autouse=True)
def _pinned_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see the pinned stack (constraints.txt), fixed llamafactory-cli and torchrun paths
    and an importable DeepSpeed, whatever this machine has installed; end-to-end tests use the real
    ones."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("real_stack"):
        return
    from glmocr_lf.runtime import launch
    from glmocr_lf.runtime.versions import Stack

    monkeypatch.setattr(Stack, "detect", classmethod(lambda cls: cls.pinned()))
    monkeypatch.setattr(launch, "llamafactory_cli", lambda required=True: "/stack/bin/llamafactory-cli")
    monkeypatch.setattr(launch, "torchrun", lambda: "/stack/bin/torchrun")
    monkeypatch.setattr(launch, "deepspeed_importable", lambda: True)


@pytest.fixture(scope="session")
def key_table_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of LLaMA-Factory's key table for the session (building it takes seconds)."""
    return tmp_path_factory.mktemp("glmocr-lf-cache")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_table_cache: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(key_table_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / ".hf"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("GLMOCR_LF_DEBUG", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


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


@pytest.fixture(name="invoke")
def invoke_fixture() -> Invoke:
    return invoke


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter."""
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@pytest.fixture
def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMOCR_LF")}
    env["HF_HUB_OFFLINE"] = "1"
    return env

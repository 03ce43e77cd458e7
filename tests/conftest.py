"""Shared fixtures: every test runs offline, in its own working directory, with no user state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
# The bundled copy of ../shared/data/cosyn_chemical* (10 images from GLM-OCR's fine-tuning example).
SAMPLE_JSON = REPO / "examples" / "cosyn_chemical.json"
SAMPLE_IMAGES = REPO / "examples" / "cosyn_chemical"


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

"""Shared fixtures: every test runs offline, in its own working directory, with no user state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Invoke, fake_host, invoke, use_host


@pytest.fixture(autouse=True)
def _fake_host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see one fake host (helpers.fake_host: no GPU, the pinned stack, fixed
    llamafactory-cli and torchrun paths, an importable DeepSpeed), whatever this machine has;
    end-to-end tests see the real one."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("real_stack"):
        return
    from glmocr_lf.runtime.versions import Stack

    use_host(monkeypatch, fake_host())
    monkeypatch.setattr(Stack, "detect", classmethod(lambda cls: cls.pinned()))


@pytest.fixture(scope="session")
def key_table_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of LLaMA-Factory's key table for the session (building it takes seconds)."""
    return tmp_path_factory.mktemp("glmocr-lf-cache")


@pytest.fixture(autouse=True)
def _table_notes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The session's key table is built by whichever test needs it first: its one-time note is
    collected here instead of landing in that test's exact stderr."""
    from glmocr_lf.config import lfkeys

    said: list[str] = []
    monkeypatch.setattr(lfkeys, "notify", said.append)
    return said


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


@pytest.fixture(name="invoke")
def invoke_fixture() -> Invoke:
    return invoke


@pytest.fixture
def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMOCR_LF")}
    env["HF_HUB_OFFLINE"] = "1"
    return env

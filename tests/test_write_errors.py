"""Every command that writes: a destination below a file, or on a read-only file system, is one
`Error:` line and exit 1, never a traceback."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from data_fixtures import good_dataset, make_png
from helpers import REPO, STACK_MISSING, Invoke

from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.fsutil import atomic_write_text, ensure_dir

EVAL_EXTRA = all(importlib.util.find_spec(m) for m in ("rapidfuzz", "apted", "lxml"))
PREDICTION = {"id": "0", "task": "text", "prompt": "<image>Text Recognition:", "reference": "a",
              "prediction": "a"}


def _adapter(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "zai-org/GLM-OCR"}))


def _config(_root: Path) -> None:
    from helpers import invoke

    assert invoke("config", "new", "--method", "lora", "-o", "lora.yaml").exit_code == 0


def _predictions(root: Path) -> None:
    for name in ("a.jsonl", "b.jsonl"):
        (root / name).write_text(json.dumps(PREDICTION) + "\n")


def _pages(root: Path) -> None:
    make_png(root / "pages" / "p.png")
    (root / "pages" / "p.txt").write_text("text\n")


def _nothing(_root: Path) -> None:
    pass


# (id, setup, argv with {out} for the destination, what it needs)
COMMANDS: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    ("export", _adapter, ["export", "--adapter", "run", "--out", "{out}/merged"], "stack"),
    ("train", _config, ["train", "lora.yaml", "output_dir={out}/run"], ""),
    ("eval run", lambda root: good_dataset(root / "src"),
     ["eval", "run", "--model", "m", "--dataset", "src/ds.json", "--out", "{out}/eval"], "eval"),
    ("eval compare", _predictions, ["eval", "compare", "a.jsonl", "b.jsonl", "--out", "{out}/report.md"], "eval"),
    ("data convert", _pages, ["data", "convert", "pages", "-o", "{out}/ocr.json"], ""),
    ("data register", lambda root: good_dataset(root / "src"),
     ["data", "register", "ds", "src/ds.json", "--data-dir", "{out}/data"], ""),
    ("config new", _nothing, ["config", "new", "--method", "lora", "-o", "{out}/lora.yaml"], ""),
    ("smoke-model", _nothing, ["smoke-model", "{out}/tiny"], "stack"),
    ("smoke", _nothing, ["smoke", "{out}/smoke"], ""),
    ("init", _nothing, ["init", "{out}/project"], ""),
]
# train reaches its output_dir only after a full pre-flight (model, data): its writes go through
# the same ensure_dir/atomic_write as the rest, covered by the unit tests below.
READ_ONLY = [c for c in COMMANDS if c[0] != "train"]


def _skip_unless(needs: str) -> None:
    if needs == "stack" and STACK_MISSING:
        pytest.skip(f"needs the training stack ({', '.join(STACK_MISSING)} not installed)")
    if needs == "eval" and not EVAL_EXTRA:
        pytest.skip("needs the eval extra: pip install '.[eval]'")


@pytest.mark.parametrize(("name", "setup", "argv", "needs"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_file_where_a_folder_must_go(tmp_path: Path, invoke: Invoke, name: str,
                                       setup: Callable[[Path], None], argv: list[str], needs: str) -> None:
    if needs == "eval":
        _skip_unless(needs)
    setup(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    result = invoke(*[a.format(out="afile") for a in argv])  # an exception would propagate here
    assert result.exit_code == 1, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: ") and "afile is a file, not a directory" in first, result.stderr
    assert "Traceback" not in result.output
    assert (tmp_path / "afile").read_text() == "not a folder"


def _read_only_mount(folder: Path) -> list[str] | None:
    """A command prefix that runs with `folder` as an empty read-only file system (a mount namespace
    of its own: works as root, where permission bits do not stop writes); None if unavailable."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "-rm", "sh", "-c", f'mount -t tmpfs -o ro none "{folder}" && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "sh", "-c", f'! mkdir "{folder}/x" 2>/dev/null'], capture_output=True,
                           check=False)
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize(("name", "setup", "argv", "needs"), READ_ONLY, ids=[c[0] for c in READ_ONLY])
def test_a_read_only_destination(tmp_path: Path, name: str, setup: Callable[[Path], None], argv: list[str],
                                 needs: str) -> None:
    _skip_unless(needs)
    (tmp_path / "ro").mkdir()
    prefix = _read_only_mount(tmp_path / "ro")
    if prefix is None:
        pytest.skip("cannot mount a read-only tmpfs here (unshare -rm)")
    setup(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GLMOCR_LF_DEBUG", None)
    proc = subprocess.run([*prefix, sys.executable, "-m", "glmocr_lf", *[a.format(out="ro") for a in argv]],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].endswith("cannot write: read-only file system"), proc.stderr


@pytest.mark.parametrize(("err", "expected"), [
    (OSError(errno.EROFS, "Read-only file system"), "cannot write: read-only file system"),
    (PermissionError(errno.EACCES, "Permission denied"), "cannot write: permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), "cannot write: No space left on device"),
])
def test_write_helpers_turn_os_errors_into_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    err: OSError, expected: str) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise err

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(GlmocrLfError) as caught:
        atomic_write_text(tmp_path / "x.json", "{}")
    assert caught.value.message == f"{tmp_path / 'x.json'}: {expected}"
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(GlmocrLfError) as caught:
        ensure_dir(tmp_path / "out")
    assert caught.value.message == f"{tmp_path / 'out'}: {expected}"

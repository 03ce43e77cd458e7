"""Several files are one result: a writer killed at its most dangerous moment (paused there by
GLMOCR_LF_PAUSE_AT, then SIGKILLed) leaves the old set or the new set, whole; two writers of one
output never both succeed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import invoke, make_png

KILL_ROUNDS = 3


def killed_at(point: str, args: list[str], cwd: Path, *, timeout_s: float = 60) -> None:
    """Run `glmocr-lf ARGS` until it reaches pause point `point`, then SIGKILL it there."""
    flag = cwd / f".paused-{point}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "GLMOCR_LF_PAUSE_AT": f"{point}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "glmocr_lf", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before {point}: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached {point}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    flag.unlink()


def pages(root: Path, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        make_png(root / f"p{i}.png", 40 + i, 30)
        (root / f"p{i}.txt").write_text(text)


def texts_of(path: Path) -> list[str]:
    return sorted(s["messages"][1]["content"] for s in json.loads(path.read_text()))


# point 6: OUT.json and OUT_val.json are one result
def test_convert_killed_between_its_two_outputs_leaves_one_whole_set(tmp_path: Path) -> None:
    pages(tmp_path / "old", [f"old {i}" for i in range(6)])
    pages(tmp_path / "new", [f"new {i}" for i in range(6)])
    assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    args = ["data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34", "--force"]
    for _ in range(KILL_ROUNDS):
        killed_at("set-swap", args, tmp_path)
        assert (tmp_path / ".ocr.json.set.json").is_file()  # killed among the renames
        # the next writer of the output completes the set the kill cut short, before anything else
        result = invoke("data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34")
        assert result.stderr == "Error: ocr.json: already exists\nHint: pass --force to overwrite it\n"
        both = texts_of(tmp_path / "ocr.json") + texts_of(tmp_path / "ocr_val.json")
        assert sorted(both) == [f"new {i}" for i in range(6)]
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".ocr.json.") and p.name != ".ocr.json.lock"]
        assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34", "--force").exit_code == 0


def test_convert_out_of_space_on_the_second_output_changes_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from glmocr_lf.runtime import fsutil

    pages(tmp_path / "old", [f"old {i}" for i in range(6)])
    pages(tmp_path / "new", [f"new {i}" for i in range(6)])
    assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    staged = fsutil._staged
    calls = []

    def full_on_second(path: Path, data: bytes) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return staged(path, data)

    monkeypatch.setattr(fsutil, "_staged", full_on_second)
    result = invoke("data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34", "--force")
    assert (result.exit_code, result.stderr) == (1, "Error: ocr.json: cannot write: No space left on device\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_convert_force_without_val_ratio_removes_the_stale_val_file(tmp_path: Path) -> None:
    pages(tmp_path / "pages", [f"t {i}" for i in range(6)])
    assert invoke("data", "convert", "pages", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert result.stderr == "Error: ocr.json: already exists\nHint: pass --force to overwrite it\n"
    (tmp_path / "ocr.json").unlink()
    result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: ocr_val.json: already exists beside ocr.json; without --val-ratio it would be stale\n"
        "Hint: pass --val-ratio to rewrite both, or --force to write the output and remove it\n"))
    result = invoke("data", "convert", "pages", "-o", "ocr.json", "--force")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "Wrote ocr.json (6 samples)", "Removed ocr_val.json: without --val-ratio its samples are in ocr.json"]
    assert not (tmp_path / "ocr_val.json").exists()


# point 8 (convert): one writer per output
def test_a_second_convert_into_the_same_output_is_refused(tmp_path: Path) -> None:
    from glmocr_lf.runtime.fsutil import output_lock

    pages(tmp_path / "pages", ["a", "b"])
    with output_lock(tmp_path / "ocr.json"):
        result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: ocr.json: another glmocr-lf is writing this convert output now\n"
        "Hint: wait for it to finish, or write to another path\n"))
    assert not (tmp_path / "ocr.json").exists()
    assert invoke("data", "convert", "pages", "-o", "ocr.json").exit_code == 0


def test_two_converts_at_once_into_one_output_one_refused(tmp_path: Path) -> None:
    pages(tmp_path / "a", [f"a {i}" for i in range(4)])
    pages(tmp_path / "b", [f"b {i}" for i in range(4)])
    flag = tmp_path / ".paused"
    env = {**os.environ, "NO_COLOR": "1", "GLMOCR_LF_PAUSE_AT": f"set-swap:{flag}"}
    first = subprocess.Popen([sys.executable, "-m", "glmocr_lf", "data", "convert", "a", "-o", "ocr.json",
                              "--val-ratio", "0.5"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        while not flag.exists():
            assert first.poll() is None
            time.sleep(0.02)
        second = subprocess.run([sys.executable, "-m", "glmocr_lf", "data", "convert", "b", "-o", "ocr.json",
                                 "--force"], cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
                                capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert (second.returncode, second.stderr) == (1, (
        "Error: ocr.json: another glmocr-lf is writing this convert output now\n"
        "Hint: wait for it to finish, or write to another path\n"))

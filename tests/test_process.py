"""The child process runner: streamed output, exit codes, Ctrl-C delivered to the child."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Invoke, put_in_hf_cache

from glmocr_lf.runtime.errors import ChildFailedError
from glmocr_lf.runtime.process import run_child
from glmocr_lf.train.run import Hooks

CHILD = """
import signal, sys, time, pathlib
marker = pathlib.Path(sys.argv[1])
def on_int(signum, frame):
    marker.write_text("got SIGINT")
    print("child: interrupted, saving and exiting", flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, on_int)
print("ready", flush=True)
for _ in range(600):
    time.sleep(0.1)
sys.exit(0)
"""


def test_output_streamed_and_exit_code_returned(tmp_path: Path) -> None:
    lines: list[str] = []
    code = "import sys; print('one'); print('two\\rthree', flush=True); sys.exit(3)"
    result = run_child([sys.executable, "-c", code], env_overlay={}, cwd=tmp_path, on_line=lines.append)
    assert lines == ["one", "three"]
    assert result.exit_code == 3


def test_env_overlay_reaches_child_but_not_us(tmp_path: Path) -> None:
    lines: list[str] = []
    code = "import os; print(os.environ['GLMOCR_LF_TEST_VAR'])"
    run_child([sys.executable, "-c", code], env_overlay={"GLMOCR_LF_TEST_VAR": "42"}, cwd=tmp_path,
              on_line=lines.append)
    assert lines == ["42"]
    assert "GLMOCR_LF_TEST_VAR" not in os.environ


def test_root_error_skips_wrapper_exceptions(tmp_path: Path) -> None:
    code = ("import sys; print('OSError: /nope is not a local folder'); "
            "print('subprocess.CalledProcessError: Command died'); sys.exit(1)")
    result = run_child([sys.executable, "-c", code], env_overlay={}, cwd=tmp_path, on_line=lambda _l: None)
    assert result.root_error() == "OSError: /nope is not a local folder"


def test_ctrl_c_goes_to_the_child_and_its_exit_code_is_ours(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    lines: list[str] = []

    def interrupt_when_ready() -> None:
        deadline = time.monotonic() + 30
        while "ready" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C does to us

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    started = time.monotonic()
    result = run_child([sys.executable, "-c", CHILD, str(marker)], env_overlay={}, cwd=tmp_path,
                       on_line=lines.append)
    assert marker.read_text() == "got SIGINT"
    assert result.exit_code == 130
    assert result.interrupted
    assert "child: interrupted, saving and exiting" in lines
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"


def _signal_when_ready(lines: list[str], signum: int) -> None:
    def send() -> None:
        deadline = time.monotonic() + 30
        while "ready" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)  # what closing the terminal (SIGHUP) or `kill` (SIGTERM) does to us

    threading.Thread(target=send, daemon=True).start()


@pytest.fixture(autouse=True)
def _signals_as_a_terminal_leaves_them() -> Iterator[None]:
    """Default dispositions whatever started pytest (under nohup, SIGHUP arrives ignored; in a
    shell's background job, SIGINT does, and Python then installs no KeyboardInterrupt handler)."""
    saved = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGHUP, signal.SIGTERM)}
    saved[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_hangup_and_term_go_to_the_child(tmp_path: Path, signum: signal.Signals) -> None:
    lines: list[str] = []
    _signal_when_ready(lines, signum)
    started = time.monotonic()
    result = run_child([sys.executable, "-c", SLEEPER], env_overlay={}, cwd=tmp_path, on_line=lines.append)
    assert time.monotonic() - started < 30
    assert (result.exit_code, result.interrupted, result.signal) == (128 + signum, True, signum.name)
    assert signal.getsignal(signum) is signal.SIG_DFL


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_run_record_says_interrupted(tmp_path: Path, invoke: Invoke, signum: signal.Signals) -> None:
    """glmocr_lf_run.json of a run killed by closing the terminal says so, as for Ctrl-C."""
    from glmocr_lf.train.plan import LaunchRequest, prepare
    from glmocr_lf.train.run import execute

    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    assert invoke("config", "new", "--method", "lora", "--dataset", "x", "-o", "lora.yaml").exit_code == 0
    plan = prepare(LaunchRequest(config=Path("lora.yaml"), overrides={"bf16": False, "output_dir": "run"},
                                 check_data=False))
    plan.command.argv = [sys.executable, "-c", SLEEPER]  # the subprocess seam: a child that waits
    lines: list[str] = []
    _signal_when_ready(lines, signum)
    with pytest.raises(ChildFailedError) as failed:
        execute(plan, Hooks(on_line=lines.append))
    assert failed.value.message.startswith(f"training interrupted by {signum.name}")
    record = json.loads((tmp_path / "run" / "glmocr_lf_run.json").read_text())
    assert (record["status"], record["signal"], record["exit_code"]) == ("interrupted", signum.name, 128 + signum)


def test_an_ignored_hangup_is_not_forwarded(tmp_path: Path) -> None:
    """Under `nohup`, SIGHUP reaches us ignored: the child keeps running and SIGHUP stays ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    lines: list[str] = []
    _signal_when_ready(lines, signal.SIGHUP)
    short = "import time; print('ready', flush=True); time.sleep(2); print('done', flush=True)"
    result = run_child([sys.executable, "-c", short], env_overlay={}, cwd=tmp_path, on_line=lines.append)
    assert (result.exit_code, result.interrupted, result.signal) == (0, False, None)
    assert lines == ["ready", "done"]
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


# issue 23 §5: one Ctrl-C stops a run that ignores it, and the record says what really happened
DEAF = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: print("child: SIGINT ignored", flush=True))
signal.signal(signal.SIGTERM, lambda *_: (print("child: SIGTERM, stopping", flush=True), sys.exit(0)))
print("ready", flush=True)
for _ in range(600):
    time.sleep(0.1)
sys.exit(0)
"""


def test_a_child_that_goes_on_after_ctrl_c_gets_sigterm_and_we_exit_130(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime import process

    monkeypatch.setattr(process, "ESCALATE_AFTER_S", 1.0)
    for _ in range(3):
        lines: list[str] = []
        _signal_when_ready(lines, signal.SIGINT)
        started = time.monotonic()
        result = run_child([sys.executable, "-c", DEAF], env_overlay={}, cwd=tmp_path, on_line=lines.append)
        assert time.monotonic() - started < 20
        assert lines[1:] == ["child: SIGINT ignored", "child: SIGTERM, stopping"]
        # the child said 0, but it was stopped half way: an interrupted run never succeeded
        assert (result.child_exit_code, result.exit_code, result.signal, result.escalated) == (
            0, 130, "SIGINT", ["SIGTERM"])


def test_a_second_ctrl_c_sends_sigterm_at_once(tmp_path: Path) -> None:
    lines: list[str] = []

    def twice() -> None:
        deadline = time.monotonic() + 30
        while "ready" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        while "child: SIGINT ignored" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=twice, daemon=True).start()
    started = time.monotonic()
    result = run_child([sys.executable, "-c", DEAF], env_overlay={}, cwd=tmp_path, on_line=lines.append)
    assert time.monotonic() - started < 8  # well before ESCALATE_AFTER_S
    assert (result.exit_code, result.escalated) == (130, ["SIGTERM"])


def test_a_child_deaf_to_sigterm_too_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime import process

    monkeypatch.setattr(process, "ESCALATE_AFTER_S", 0.5)
    monkeypatch.setattr(process, "KILL_AFTER_S", 0.5)
    stubborn = DEAF.replace('(print("child: SIGTERM, stopping", flush=True), sys.exit(0))',
                            'print("child: SIGTERM ignored", flush=True)')
    lines: list[str] = []
    _signal_when_ready(lines, signal.SIGINT)
    result = run_child([sys.executable, "-c", stubborn], env_overlay={}, cwd=tmp_path, on_line=lines.append)
    assert (result.returncode, result.exit_code, result.escalated) == (-9, 130, ["SIGTERM", "SIGKILL"])


def test_the_record_of_a_run_that_ignored_ctrl_c(tmp_path: Path, invoke: Invoke,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime import process
    from glmocr_lf.train.plan import LaunchRequest, prepare
    from glmocr_lf.train.run import execute

    monkeypatch.setattr(process, "ESCALATE_AFTER_S", 1.0)
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    assert invoke("config", "new", "--method", "lora", "--dataset", "x", "-o", "lora.yaml").exit_code == 0
    plan = prepare(LaunchRequest(config=Path("lora.yaml"), overrides={"bf16": False, "output_dir": "run"},
                                 check_data=False))
    plan.command.argv = [sys.executable, "-c", DEAF]
    lines: list[str] = []
    _signal_when_ready(lines, signal.SIGINT)
    with pytest.raises(ChildFailedError) as failed:
        execute(plan, Hooks(on_line=lines.append))
    assert failed.value.exit_code == 130
    record = json.loads((tmp_path / "run" / "glmocr_lf_run.json").read_text())
    assert {k: record[k] for k in ("status", "signal", "exit_code", "child_exit_code", "escalated")} == {
        "status": "interrupted", "signal": "SIGINT", "exit_code": 130, "child_exit_code": 0,
        "escalated": ["SIGTERM"]}

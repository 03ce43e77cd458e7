"""The child process runner: streamed output, exit codes, Ctrl-C delivered to the child."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from glmocr_lf.process import run_child

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

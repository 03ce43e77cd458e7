"""The one place that runs child processes: llamafactory-cli train / export (`run_child`, streamed),
and the short probes whose output we read (`run_captured`: nvidia-smi, the key-table child); and the
one place that handles signals, ours too (`stop_signals_interrupt`: eval runs in our own process).

A streamed child gets its own process group. Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed)
reaching us are forwarded to that whole group (torchrun and its workers included) and we keep
waiting; one we ignore (SIGHUP under nohup) is not forwarded. A child still running
ESCALATE_AFTER_S after the forwarded signal, or a second signal, gets SIGTERM, and SIGKILL
KILL_AFTER_S later: one Ctrl-C stops a run. The child's exit code becomes ours, except that an
interrupted run exits 128 + the signal (130 for Ctrl-C) whatever the child said, since it did not
finish what it was asked to. The argv is a list, never a shell string; our own os.environ is never
changed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ESCALATE_AFTER_S = 10.0  # a trainer saves nothing on SIGINT; 10 s lets a data loader wind down
KILL_AFTER_S = 20.0
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)|KeyboardInterrupt)\b:?\s*(.*)$")
_NOT_THE_CAUSE = {"CalledProcessError", "ChildFailedError", "ChildProcessError"}


@dataclass
class ChildResult:
    returncode: int
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    interrupted: bool = False  # a forwarded signal reached us while the child ran
    signal: str | None = None  # the first one: SIGINT, SIGTERM or SIGHUP
    escalated: list[str] = field(default_factory=list)  # what we sent after it: SIGTERM, SIGKILL

    @property
    def child_exit_code(self) -> int:
        """Shell convention: killed by signal N -> 128 + N."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode

    @property
    def exit_code(self) -> int:
        """The child's, or 128 + the signal that interrupted it (a run cut short never succeeded)."""
        if self.signal is not None:
            return 128 + signal.Signals[self.signal].value
        return self.child_exit_code

    def root_error(self) -> str | None:
        """The last `SomeError: message` line the child printed that is not a wrapper's re-raise."""
        for line in reversed(self.tail):
            match = _ERROR_LINE.match(line)
            if match and match.group(1) not in _NOT_THE_CAUSE:
                return line.strip()
        return None


def _last_redraw(line: str) -> str:
    segments = [s for s in line.split("\r") if s.strip()]
    return segments[-1] if segments else ""


def _reader(stream: object, lines: queue.Queue[str | None]) -> None:
    assert hasattr(stream, "readline")
    buffer = ""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.readline()
        if not chunk:
            break
        buffer += chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        # progress bars redraw with \r: keep only the last state of such a line
        parts = re.split(r"\n", buffer)
        buffer = parts.pop()
        for part in parts:
            lines.put(_last_redraw(part))
    if buffer:
        lines.put(_last_redraw(buffer))
    lines.put(None)


def run_child(argv: Sequence[str], *, env_overlay: Mapping[str, str], cwd: Path,
              on_line: Callable[[str], None], on_tick: Callable[[], None] | None = None,
              tick_seconds: float = 0.5) -> ChildResult:
    """Run argv to completion, streaming its merged output line by line to `on_line`."""
    env = {**os.environ, **env_overlay}
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
    result = ChildResult(returncode=0)
    deadline: list[float] = []  # when to escalate: set by the first signal, moved by each escalation

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    def escalate() -> None:
        if proc.poll() is not None or len(result.escalated) == 2:
            return
        sent = signal.SIGTERM if not result.escalated else signal.SIGKILL
        result.escalated.append(sent.name)
        send(sent)
        deadline[:] = [time.monotonic() + KILL_AFTER_S]

    def forward(signum: int, _frame: FrameType | None) -> None:
        result.interrupted = True
        if result.signal is None:
            result.signal = signal.Signals(signum).name
            deadline[:] = [time.monotonic() + ESCALATE_AFTER_S]
            send(signum)
        else:  # a second Ctrl-C: the user means it
            escalate()

    previous = _install(forward)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        _stream(lines, result, on_line, on_tick, tick_seconds, deadline, escalate)
        result.returncode = _wait(proc, deadline, escalate)
        if on_tick:
            on_tick()
    finally:
        if proc.poll() is None:  # we are leaving abnormally: do not orphan the child
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP, SIGINT) that reached our own process, raised where it was as
    Python raises Ctrl-C, so the same cleanup runs; we exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.signal)


_received: list[int] = []  # the stop signals that reached the active stop_signals_interrupt


def stop_of(err: BaseException) -> KeyboardInterrupt | None:
    """The stop behind `err`: itself for Ctrl-C or `Interrupted`; an `Interrupted` for a stop signal
    that code it interrupted wrapped in another exception (Python turns one raised inside a
    `__set_name__`, e.g. while transformers builds a dataclass, into a RuntimeError); else None."""
    if isinstance(err, KeyboardInterrupt):
        return err
    return Interrupted(_received[-1]) if _received else None


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While the body runs (in our own process, not a child's), each forwarded signal raises
    `Interrupted`: `kill`, `timeout` or a scheduler's SIGTERM is a Ctrl-C, not a death that runs
    no cleanup and leaves a record saying "running". A signal we ignore stays ignored. Whatever
    the body raises after a stop signal leaves as `Interrupted` (see `stop_of`)."""
    def interrupt(signum: int, _frame: FrameType | None) -> None:
        _received.append(signum)
        raise Interrupted(signum)

    previous = _install(interrupt)
    _received.clear()
    try:
        yield
    except BaseException as err:
        stop = stop_of(err)
        if stop is not None and stop is not err:
            raise stop from err
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    """`handler` for the forwarded signals (from the main thread only); the handlers it replaced.
    A signal we ignore stays ignored (`nohup glmocr-lf train ...`): forwarding the hangup would stop
    a child that installs its own handler (torchrun does) and defeat nohup."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in FORWARDED_SIGNALS
            if signal.getsignal(sig) is not signal.SIG_IGN}


def _stream(lines: queue.Queue[str | None], result: ChildResult, on_line: Callable[[str], None],
            on_tick: Callable[[], None] | None, tick_seconds: float, deadline: list[float],
            escalate: Callable[[], None]) -> None:
    """Hand each line of the child's output to `on_line` (kept in `result.tail`) until it closes,
    ticking every `tick_seconds`, and escalating once the deadline a forwarded signal set is past."""
    last_tick = time.monotonic()
    while True:
        try:
            line = lines.get(timeout=tick_seconds)
        except queue.Empty:
            line = ""
        else:
            if line is None:
                return
            result.tail.append(line)
            on_line(line)
        if deadline and time.monotonic() >= deadline[0]:
            escalate()
        if on_tick and time.monotonic() - last_tick >= tick_seconds:
            last_tick = time.monotonic()
            on_tick()


def _wait(proc: subprocess.Popen[bytes], deadline: list[float], escalate: Callable[[], None]) -> int:
    """The exit status once the child's output has closed; a child that closed it but lives on
    past an escalation deadline is escalated as well."""
    while True:
        try:
            return proc.wait(timeout=max(0.05, deadline[0] - time.monotonic()) if deadline else None)
        except subprocess.TimeoutExpired:
            escalate()


@dataclass(frozen=True)
class Captured:
    """A probe's result: returncode None when it could not start or ran past its time (`error` says which)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_captured(argv: Sequence[str], *, timeout_s: float, env_overlay: Mapping[str, str] | None = None) -> Captured:
    """Run a short probe to completion with its output captured as text (no signal forwarding: it is
    ours to stop, within `timeout_s`)."""
    env = {**os.environ, **(env_overlay or {})}
    try:
        proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Captured(None, error=str(exc))
    return Captured(proc.returncode, proc.stdout, proc.stderr)

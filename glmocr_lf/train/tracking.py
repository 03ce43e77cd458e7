"""Experiment tracking: run_name and the TensorBoard log directory filled from output_dir (each
with its reason), and where the event files went after the run."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.runtime.constants import ENV_TENSORBOARD_LOGGING_DIR
from glmocr_lf.runtime.versions import Stack, parse
from glmocr_lf.train.changes import Changes

# From transformers 5.0 the TensorBoard callback ignores `logging_dir` (deprecated) and reads
# TENSORBOARD_LOGGING_DIR; before, it read `logging_dir`.
LOGGING_DIR_IGNORED_FROM = "5.0.0"
EVENT_GLOB = "events.out.tfevents.*"


def logging_dir_honoured(stack: Stack) -> bool:
    have, limit = stack.transformers, parse(LOGGING_DIR_IGNORED_FROM)
    return have is not None and limit is not None and have < limit


def tracking_defaults(cfg: TrainConfig, stack: Stack, environ: Mapping[str, str], *,
                      now: datetime | None = None, host: str | None = None) -> Changes:
    """What a run reporting to a tracker gets unless the config (or TENSORBOARD_LOGGING_DIR in
    `environ`) says otherwise. Relative paths resolve against the current directory, as the launch does."""
    out = Changes()
    names = cfg.trackers
    output_dir = cfg.output.output_dir
    if not names or not output_dir:
        return out
    if cfg.output.run_name is None:
        out.values["run_name"] = output_dir
        out.reasons.append(f"run_name: {output_dir} (the output_dir, as transformers 4 named runs; "
                           f"shown by {', '.join(names)})")
    if "tensorboard" not in names and "all" not in names:
        return out
    chosen = cfg.passthrough_value("logging_dir")
    if not chosen and environ.get(ENV_TENSORBOARD_LOGGING_DIR):
        out.reasons.append(f"TensorBoard event files go to {environ[ENV_TENSORBOARD_LOGGING_DIR]} "
                           f"({ENV_TENSORBOARD_LOGGING_DIR} is set)")
        return out
    if chosen:
        logdir = Path(chosen).expanduser().resolve()
    else:
        stamp = f"{(now or datetime.now()):%b%d_%H-%M-%S}_{host or socket.gethostname()}"
        logdir = Path(output_dir).expanduser().resolve() / "runs" / stamp  # transformers' own layout
    out.env[ENV_TENSORBOARD_LOGGING_DIR] = str(logdir)
    where = "logging_dir" if chosen else "output_dir/runs/<time>_<host>"
    if logging_dir_honoured(stack):
        out.values["logging_dir"] = str(logdir)
        out.reasons.append(f"logging_dir: {logdir} (TensorBoard event files; from {where})")
    else:
        out.reasons.append(f"{ENV_TENSORBOARD_LOGGING_DIR}={logdir} (TensorBoard event files; from "
                           f"{where}: transformers {stack.get('transformers') or '5'} reads it from "
                           "the environment, not from logging_dir)")
    return out


def tensorboard_logs(*envs: Mapping[str, str]) -> tuple[Path, list[Path]] | None:
    """The run's TensorBoard directory (from the first of `envs` that names one: the launch's
    overlay, then ours) and the event files in it; None when the run did not report there."""
    logdir = next((e[ENV_TENSORBOARD_LOGGING_DIR] for e in envs if e.get(ENV_TENSORBOARD_LOGGING_DIR)), None)
    if not logdir:
        return None
    path = Path(logdir)
    return path, sorted(path.glob(EVENT_GLOB)) if path.is_dir() else []


def summary_rows(*envs: Mapping[str, str]) -> list[tuple[str, str]]:
    """The train summary's line about TensorBoard, if the run reported there."""
    found = tensorboard_logs(*envs)
    if found is None:
        return []
    logdir, events = found
    if not events:
        return [("tensorboard", f"{logdir} (no event files written)")]
    count = f"{len(events)} event file{'s' if len(events) != 1 else ''}"
    return [("tensorboard", f"{logdir} ({count}; view: tensorboard --logdir {logdir})")]

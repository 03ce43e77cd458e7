"""Execute a LaunchPlan: write the run record, run llamafactory-cli, follow its log, summarise."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data import jsonl
from glmocr_lf.runtime import launch, records
from glmocr_lf.runtime.fsutil import atomic_write_text, ensure_dir, remove_path
from glmocr_lf.runtime.records import checkpoints
from glmocr_lf.train.plan import LaunchPlan

HEARTBEAT_S = 60  # how often a running train rewrites its record (records.HEARTBEAT_STALE_S reads it)


class TrainerLog:
    """Follows `trainer_log.jsonl`, which LLaMA-Factory appends one JSON object per log step to."""

    def __init__(self, path: Path) -> None:
        self.follower = jsonl.Follower(path)
        self.entries: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        new = self.follower.poll()
        self.entries.extend(new)
        return new


def log_stats(entry: dict[str, Any]) -> list[str]:
    """loss, eval loss, lr and ETA of one trainer_log.jsonl entry, as short labelled figures."""
    stats = []
    if "loss" in entry:
        stats.append(f"loss {entry['loss']:.4f}")
    if "eval_loss" in entry:
        stats.append(f"eval_loss {entry['eval_loss']:.4f}")
    if "lr" in entry:
        stats.append(f"lr {entry['lr']:.2e}")
    if entry.get("remaining_time"):
        stats.append(f"eta {entry['remaining_time']}")
    return stats


def log_line(entry: dict[str, Any]) -> str | None:
    """A progress line for a trainer_log.jsonl entry that carries a loss; None for others."""
    if "loss" not in entry and "eval_loss" not in entry:
        return None
    return "  ".join([f"step {entry.get('current_steps')}/{entry.get('total_steps')}", *log_stats(entry)])


@dataclass
class TrainSummary:
    exit_code: int
    output_dir: str
    steps: int | None = None
    total_steps: int | None = None
    final_loss: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    runtime_s: float | None = None
    samples_per_second: float | None = None
    last_checkpoint: str | None = None
    loss_plot: str | None = None
    adapter: bool = False
    log: str | None = None  # llamafactory-cli's whole output
    resumed_at_step: int | None = None  # train_loss then covers only the steps after it
    no_loss_reason: str | None = None  # why final_loss is None
    no_plot_reason: str | None = None  # why loss_plot is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(output_dir: Path, log: TrainerLog, exit_code: int, resumed_at: int | None = None,
              values: Mapping[str, Any] | None = None) -> TrainSummary:
    """The run's figures from its trainer log and all_results.json. After a resume, transformers'
    train_loss and samples/s count the steps before it too (its loss sum over every step divided by
    the total, its samples of the whole run over the resumed part's time): the mean loss is then the
    logged losses after the resume and samples/s is scaled to the steps this run took."""
    values = values or {}
    summary = TrainSummary(exit_code=exit_code, output_dir=str(output_dir), resumed_at_step=resumed_at)
    losses = []
    for entry in log.entries:
        if "current_steps" in entry:
            summary.steps = entry["current_steps"]
            summary.total_steps = entry.get("total_steps")
        if "loss" in entry:
            summary.final_loss = entry["loss"]
            losses.append(entry["loss"])
        if "eval_loss" in entry:
            summary.eval_loss = entry["eval_loss"]
    try:
        results = json.loads((output_dir / "all_results.json").read_text())
    except (OSError, ValueError):
        results = {}
    summary.train_loss = results.get("train_loss")
    summary.runtime_s = results.get("train_runtime")
    summary.samples_per_second = results.get("train_samples_per_second")
    summary.eval_loss = results.get("eval_loss", summary.eval_loss)
    if resumed_at is not None:
        summary.train_loss = sum(losses) / len(losses) if losses else None
        if summary.samples_per_second is not None and summary.steps and summary.total_steps:
            summary.samples_per_second *= max(summary.steps - resumed_at, 0) / summary.total_steps
    if not losses:
        logging_steps = values.get("logging_steps")
        summary.no_loss_reason = (f"no step was logged: logging_steps {logging_steps} > the run's {summary.steps} steps"
                                  if isinstance(logging_steps, int) and summary.steps is not None
                                  and logging_steps > summary.steps else "no step was logged")
    found = checkpoints(output_dir)
    summary.last_checkpoint = str(found[-1]) if found else None
    plot = output_dir / "training_loss.png"
    summary.loss_plot = str(plot) if plot.exists() else None
    if summary.loss_plot is None:
        summary.no_plot_reason = ("plot_loss is off" if not values.get("plot_loss")
                                  else summary.no_loss_reason or "LLaMA-Factory wrote none")
    summary.adapter = (output_dir / "adapter_model.safetensors").exists()
    return summary


def write_record(plan: LaunchPlan, **outcome: Any) -> None:
    """The run's record: the command, what export and eval read back (base model, resolution), and
    `outcome` (status, times, exit code, summary)."""
    cmd = plan.command
    records.write_train_record(plan.output_dir, records.TrainRecord(
        command=cmd.shell_line(), argv=cmd.argv, env=cmd.env, yaml=str(plan.yaml_path),
        model_name_or_path=plan.config.model.model_name_or_path,
        finetuning_type=plan.config.finetuning_type, image_max_pixels=plan.config.image_max_pixels,
        image_min_pixels=plan.config.image_min_pixels, template=plan.config.dataset.template, **outcome))


def _summary(plan: LaunchPlan, log: TrainerLog, exit_code: int) -> TrainSummary:
    """Node 0's figures; another node's run has none of its own (they are node 0's)."""
    resumed_at = int(plan.resume_from.name.split("-")[1]) if plan.resume_from is not None else None
    if plan.node_rank == 0:
        summary = summarise(plan.output_dir, log, exit_code, resumed_at, plan.config.flat())
    else:
        summary = TrainSummary(exit_code=exit_code, output_dir=str(plan.output_dir))
    summary.log = str(plan.log_path)
    return summary


@dataclass
class Hooks:
    """How the CLI watches a run: child output lines and new trainer-log entries."""

    on_line: Callable[[str], None] = lambda _line: None
    on_log: Callable[[dict[str, Any]], None] = lambda _entry: None


def execute(plan: LaunchPlan, hooks: Hooks | None = None) -> TrainSummary:
    """Run the plan (refused while it has problems); raise ChildFailedError (with the child's exit
    code) if training fails.

    Node 0 owns the run's files: it cleans output_dir (--fresh), writes the record and follows
    trainer_log.jsonl, which LLaMA-Factory's rank 0 (on node 0) writes. Every other node writes only
    its own YAML and log (`train.node1.log`): on shared storage a node that starts before or after
    node 0 never removes, refuses or overwrites what node 0 owns."""
    hooks = hooks or Hooks()
    refusal = plan.refusal()
    if refusal is not None:
        raise refusal
    node0 = plan.node_rank == 0
    for path in plan.removals:
        remove_path(path)
    ensure_dir(plan.output_dir, "output_dir")
    atomic_write_text(plan.yaml_path, plan.yaml_text)
    started = records.now()
    if node0:
        write_record(plan, started=started, status="running")

    log = TrainerLog(plan.output_dir / "trainer_log.jsonl")
    if plan.resume_from is not None:
        log.poll()  # entries of the earlier run are history, not progress
        log.entries.clear()

    beat = [time.monotonic()]

    def tick() -> None:
        for entry in log.poll():
            hooks.on_log(entry)
        if time.monotonic() - beat[0] >= HEARTBEAT_S:  # a reader on another host sees we are alive
            beat[0] = time.monotonic()
            write_record(plan, started=started, status="running")

    # appended for a resumed run: its log keeps the part before it (a fresh one starts a new file)
    result = launch.run(plan.command, plan.log_path, on_line=hooks.on_line, on_tick=tick if node0 else None,
                        append=plan.resume_from is not None)
    summary = _summary(plan, log, result.exit_code)
    if node0:
        status = "interrupted" if result.interrupted else ("finished" if result.exit_code == 0 else "failed")
        # an interrupted run exits 128 + signal; the record also says what the child itself did
        write_record(plan, started=started, status=status, **({"signal": result.signal} if result.signal else {}),
                     finished=records.now(), exit_code=result.exit_code, child_exit_code=result.child_exit_code,
                     escalated=result.escalated, summary=summary.to_dict())
    if result.exit_code != 0:
        what = f"interrupted by {result.signal}" if result.interrupted else f"failed (exit code {result.exit_code})"
        where = f" on node {plan.node_rank} of {plan.nnodes}" if plan.nnodes > 1 else ""
        raise launch.failure(f"training {what}{where}", result, plan.log_path)
    return summary

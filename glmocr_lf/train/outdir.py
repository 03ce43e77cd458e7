"""What a launch does with output_dir: which node checks, cleans and writes it, what --fresh
removes, what --resume continues from (and when there is nothing to resume), and the names of the
files a node other than 0 writes beside node 0's. Reads the folder; writes nothing.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime import records
from glmocr_lf.runtime.errors import LaunchError, NothingToDo
from glmocr_lf.runtime.records import checkpoints
from glmocr_lf.train.changes import Changes
from glmocr_lf.train.context import PlanContext

OUR_FILES = {C.TRAIN_YAML, records.TRAIN_RECORD}


def node_file(name: str, node_rank: int) -> str:
    """The name of node `node_rank`'s copy of a per-node file: node 0 keeps `name`, node 1 of
    `train.log` writes `train.node1.log`."""
    if node_rank == 0:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.node{node_rank}.{suffix}" if dot else f"{name}.node{node_rank}"


def other_nodes_file(name: str) -> bool:
    """Whether `name` is a file node_file() names for a node other than 0 (node 0 leaves them be)."""
    return re.fullmatch(r".+\.node[1-9]\d*(\.[^.]+)?", name) is not None


# What shows a folder holds a training run (so that --fresh may empty it): our record, LLaMA-Factory's
# and transformers' logs and state, a checkpoint.
RUN_MARKERS = (records.TRAIN_RECORD, C.TRAIN_LOG, "trainer_log.jsonl", "trainer_state.json", "all_results.json")


def run_entries(output_dir: Path) -> list[Path]:
    """What output_dir holds that node 0 answers for: everything but other nodes' own files."""
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if not other_nodes_file(p.name))


def fresh_removals(output_dir: Path) -> list[Path]:
    """Everything the earlier run left in output_dir (adapter, results, plot, checkpoints, logs,
    record): a fresh run that stops early must not leave the old adapter looking like its own.
    A folder that shows no sign of a training run is refused rather than emptied."""
    entries = run_entries(output_dir)
    if entries and not checkpoints(output_dir) and not any((output_dir / m).exists() for m in RUN_MARKERS):
        shown = ", ".join(p.name for p in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise LaunchError(f"{output_dir}: holds files no training run wrote ({shown}); --fresh removes "
                          "everything in output_dir", hint="set output_dir to a folder of its own")
    return entries


def finished_run(checkpoint: Path, values: dict[str, Any]) -> str | None:
    """Why resuming `checkpoint` would train nothing (it is the run's last step), or None."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step, planned = int(state["global_step"]), int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    max_steps = values.get("max_steps")
    if isinstance(max_steps, int) and max_steps > 0:
        planned = max_steps
    elif values.get("num_train_epochs") not in (None, state.get("num_train_epochs")):
        return None  # a different length in epochs: transformers counts its steps anew
    if step < planned:
        return None
    return f"{checkpoint} is step {step} of {planned}: the run finished"


def resume_policy(cfg: TrainConfig, context: PlanContext) -> Changes:
    """What happens to an existing output dir: --resume continues from its last complete checkpoint
    (a run already at its last step has nothing to do: NothingToDo), --fresh removes everything the
    earlier run left, --resume-if-any is the one or the other, neither refuses a dir that holds a run;
    a run still training there is refused.

    Node 0 answers for output_dir: only it reads the record (node 0 writes "running" while it waits
    for the others at the rendezvous), refuses a dir that holds a run and removes the earlier run. Every other node decides the same resume, writes its own files and leaves node
    0's alone, whether it starts before or after node 0."""
    changes = Changes()
    output_dir = Path(str(cfg.output.output_dir)).expanduser().resolve()
    node0 = context.topology.node_rank == 0
    found = checkpoints(output_dir) if output_dir.is_dir() else []
    # transformers writes trainer_state.json last: without it a checkpoint was cut short
    complete = [c for c in found if (c / "trainer_state.json").is_file()]
    record = records.read_train_record(output_dir) if output_dir.is_dir() and node0 else None
    if record is not None and record.status == "running":
        # a live run of this host; another host's may be a node of this very multi-node run
        if record.host == socket.gethostname() and context.topology.nnodes == 1:
            changes.problems.append(LaunchError(
                f"{output_dir}: a run is still training here (process {record.pid} on {record.host})",
                hint="wait for it to finish, stop it, or choose another output_dir"))
            return changes
        changes.reasons.append(f"{output_dir} records a run still going on {record.host} (process {record.pid})")
    if record is not None and record.status == "died":
        changes.reasons.append(f"the earlier run in {output_dir} died ({record.died})")
    mode = context.request.resume
    if mode == "auto":
        mode = "resume" if complete else "fresh"
        changes.reasons.append(f"--resume-if-any: {'a' if complete else 'no'} complete checkpoint in {output_dir}")
    if mode == "resume":
        _resume(cfg, output_dir, found, complete, changes)
    elif mode == "fresh":
        changes.values.update(overwrite_output_dir=True, resume_from_checkpoint=None)
        _fresh(output_dir, node0, changes)
    elif node0:
        existing = [p for p in run_entries(output_dir) if p.name not in OUR_FILES]
        if existing:
            what = f"checkpoint {found[-1].name}" if found else f"{len(existing)} file(s)"
            what += f"; it died: {record.died}" if record is not None and record.status == "died" else ""
            changes.problems.append(LaunchError(
                f"{output_dir} already holds a run ({what})",
                hint="pass --resume to continue from its last checkpoint, or --fresh to start over"))
    return changes


def _resume(cfg: TrainConfig, output_dir: Path, found: list[Path], complete: list[Path], changes: Changes) -> None:
    """--resume: from the last complete checkpoint; NothingToDo when it is the run's last step."""
    if not complete:
        changes.problems.append(LaunchError(f"{output_dir}: no complete checkpoint-N to resume from",
                                            hint="drop --resume to start a new run"))
        return
    done = finished_run(complete[-1], cfg.flat())
    if done:
        raise NothingToDo(f"{done}; nothing to resume",
                          hint="pass max_steps=N beyond it to train further, or --fresh to start over")
    for partial in found[found.index(complete[-1]) + 1:]:
        changes.reasons.append(f"skipping {partial.name}: incomplete (the run stopped while saving it)")
    changes.values.update(resume_from_checkpoint=str(complete[-1]), overwrite_output_dir=False)
    changes.reasons.append(f"resuming from {complete[-1]}")


def _fresh(output_dir: Path, node0: bool, changes: Changes) -> None:
    """--fresh: node 0 removes everything the earlier run left (other nodes remove nothing)."""
    try:
        changes.removals = fresh_removals(output_dir) if node0 else []
    except LaunchError as exc:
        changes.problems.append(exc)
    if changes.removals:
        shown = ", ".join(p.name for p in changes.removals[:4]) + (", ..." if len(changes.removals) > 4 else "")
        many = len(changes.removals) != 1
        changes.reasons.append(f"--fresh: removing {len(changes.removals)} entr{'ies' if many else 'y'} of the "
                               f"earlier run in {output_dir} ({shown})")

"""How glmocr-lf starts LLaMA-Factory, for `train` and `export` alike: the executables
(llamafactory-cli, torchrun), the argv, the environment overlay (hub, version check, torchrun
variables, PATH), the printable command and the whitespace rule. Processes themselves are run by
`process.run_child`; what a run leaves behind is recorded by `records`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime.constants import Hub
from glmocr_lf.runtime.errors import ChildFailedError, LaunchError, Problem
from glmocr_lf.runtime.host import Host
from glmocr_lf.runtime.process import ChildResult, run_child
from glmocr_lf.runtime.versions import Stack

DEFAULT_MASTER_PORT = 29500
LLAMAFACTORY_CLI = "llamafactory-cli"
# Values LLaMA-Factory passes on as paths; its torchrun relaunch joins its argv and re-splits it
# on whitespace, so a path with a space breaks there.
PATH_KEYS = ("model_name_or_path", "adapter_name_or_path", "dataset_dir", "media_dir", "output_dir",
             "tokenized_path", "deepspeed", "resume_from_checkpoint", "export_dir")


@dataclass(frozen=True)
class Topology:
    """Where the processes go: GPUs on this node, processes per node, nodes."""

    gpus: tuple[int, ...] | None = None
    nproc: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    deepspeed: str | None = None

    def processes_per_node(self, visible_gpus: int) -> int:
        if self.nproc is not None:
            return self.nproc
        if self.gpus is not None:
            return len(self.gpus)
        return max(visible_gpus, 1)

    def needs_torchrun(self, visible_gpus: int) -> bool:
        return self.processes_per_node(visible_gpus) > 1 or self.deepspeed is not None or self.nnodes > 1

    def problems(self) -> list[Problem]:
        out = []
        if self.nnodes < 1:
            out.append(Problem("--nnodes", "must be at least 1"))
        if not 0 <= self.node_rank < max(self.nnodes, 1):
            out.append(Problem("--node-rank", f"must be between 0 and {self.nnodes - 1} for --nnodes {self.nnodes}"))
        if self.nnodes > 1 and not self.master_addr:
            out.append(Problem("--master-addr", "multi-node training needs the address of node 0 on every node"))
        if self.nproc is not None and self.nproc < 1:
            out.append(Problem("--nproc", "must be at least 1"))
        if self.gpus is not None and self.nproc is not None and self.nproc > len(self.gpus):
            out.append(Problem("--nproc", f"{self.nproc} processes but only {len(self.gpus)} GPUs in --gpus"))
        if self.master_port is not None and not 0 < self.master_port < 65536:
            out.append(Problem("--master-port", "must be a TCP port (1-65535)"))
        return out


@dataclass
class Command:
    """One llamafactory-cli invocation: what runs, with which environment overlay, where."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path

    def shell_line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"cd {shlex.quote(str(self.cwd))} && {env + ' ' if env else ''}{shlex.join(self.argv)}"


@dataclass
class Overlay:
    """Environment variables for the child and what to tell the user about them."""

    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def llamafactory_cli(*, required: bool = True) -> str:
    """The llamafactory-cli of the environment we run in (beside our interpreter), else on PATH;
    its bare name when it is not installed and only a dry run will show it."""
    found = Host.detect().executable(LLAMAFACTORY_CLI)
    if found:
        return found
    if not required:
        return "llamafactory-cli"
    raise LaunchError("llamafactory-cli is not installed",
                      hint="install the training stack: `make install`, or see README § Install")


def command(verb: str, yaml_path: Path, env: dict[str, str], cwd: Path, *, dry_run: bool = False,
            cli: str | None = None) -> Command:
    """`cli verb yaml_path`; `cli`: the llamafactory-cli to run (found here when not given)."""
    return Command([cli or llamafactory_cli(required=not dry_run), verb, str(yaml_path)], env, cwd)


def common_overlay(stack: Stack, hub: Hub) -> Overlay:
    """What every llamafactory-cli call needs: the version-check bypass (only when the installed
    versions are outside llamafactory's ranges) and the ModelScope switch."""
    overlay = Overlay()
    rejects = stack.llamafactory_rejects()
    if rejects:
        overlay.env[C.ENV_DISABLE_VERSION_CHECK] = "1"
        overlay.notes.append("DISABLE_VERSION_CHECK=1: llamafactory would refuse " + "; ".join(rejects))
    if hub == "modelscope":
        overlay.env[C.ENV_USE_MODELSCOPE_HUB] = "1"
    return overlay


def torchrun_overlay(topology: Topology, visible_gpus: int) -> Overlay:
    """LLaMA-Factory's launcher variables for this topology (none for one in-process run)."""
    overlay = Overlay()
    env = overlay.env
    if topology.gpus is not None:
        env[C.ENV_CUDA_VISIBLE_DEVICES] = ",".join(str(g) for g in topology.gpus)
    if topology.needs_torchrun(visible_gpus):
        env[C.ENV_FORCE_TORCHRUN] = "1"
        env[C.ENV_NNODES] = str(topology.nnodes)
        env[C.ENV_NODE_RANK] = str(topology.node_rank)
        env[C.ENV_NPROC_PER_NODE] = str(topology.processes_per_node(visible_gpus))
        if topology.master_addr:
            env[C.ENV_MASTER_ADDR] = topology.master_addr
        if topology.master_port is not None:
            env[C.ENV_MASTER_PORT] = str(topology.master_port)
        elif topology.nnodes > 1:
            # LLaMA-Factory picks a random free port on each node otherwise: nodes never meet
            env[C.ENV_MASTER_PORT] = str(DEFAULT_MASTER_PORT)
    return overlay


def launcher_overlay(topology: Topology, host: Host,
                     config_deepspeed: str | None = None) -> tuple[list[Problem], Overlay]:
    """What a torchrun launch needs from this environment, checked before launch: DeepSpeed
    importable for --deepspeed (or the config's `deepspeed` key), and torchrun. LLaMA-Factory runs `torchrun` by name, so when the one
    beside our interpreter is not the one PATH finds (a venv used without activating it), its folder
    goes first on the child's PATH. Reads this process's PATH; changes nothing."""
    problems: list[Problem] = []
    overlay = Overlay()
    if (topology.deepspeed or config_deepspeed) and not host.importable("deepspeed"):
        where, fix = (("--deepspeed", "train without --deepspeed") if topology.deepspeed
                      else ("deepspeed", "remove deepspeed from the config"))
        problems.append(Problem(where, f"deepspeed is not installed in this environment ({sys.executable}); "
                                       f"pip install deepspeed, or {fix}"))
    if not topology.needs_torchrun(len(host.gpus)):
        return problems, overlay
    found = host.executable("torchrun")
    if found is None:
        problems.append(Problem("torchrun", f"not found beside {sys.executable} nor on PATH; several "
                                            "processes, DeepSpeed and several nodes launch through torch's "
                                            "torchrun: install torch in this environment"))
    elif shutil.which("torchrun") != found:
        folder = str(Path(found).parent)
        path = os.environ.get(C.ENV_PATH, "")
        overlay.env[C.ENV_PATH] = folder + os.pathsep + path if path else folder
        overlay.notes.append(f"PATH starts with {folder}: LLaMA-Factory runs torchrun by name")
    return problems, overlay


def hub_model_id(model: str, hub: Hub, *, modelscope: str | None) -> tuple[str, str | None]:
    """The model id for `hub`, and a note when it changed. ModelScope needs its package (`modelscope`:
    its installed version) and knows GLM-OCR as ZhipuAI/GLM-OCR, not zai-org/GLM-OCR."""
    if hub != "modelscope":
        return model, None
    if modelscope is None:
        raise LaunchError("--hub modelscope needs the modelscope package",
                          hint="pip install 'modelscope>=1.14.0'")
    if model == C.HF_MODEL_ID:
        return C.MODELSCOPE_MODEL_ID, f"model_name_or_path: {C.HF_MODEL_ID} -> {C.MODELSCOPE_MODEL_ID} (its ModelScope id)"
    return model, None


def whitespace_note(path: Path) -> str | None:
    """A warning for a project or data path with whitespace: fine for one process, not for torchrun."""
    if not re.search(r"\s", str(Path(path).resolve())):
        return None
    return (f"{Path(path).resolve()} contains whitespace: one-process training and export work, but a "
            "multi-process launch (torchrun: several GPUs, DeepSpeed, several nodes) splits it and is "
            "refused; a path without spaces avoids that")


def whitespace_problems(values: dict[str, Any]) -> list[Problem]:
    """Path values LLaMA-Factory's torchrun relaunch would split on whitespace (it re-joins its argv
    and splits it again); a single in-process run passes them through intact."""
    out = []
    for key in PATH_KEYS:
        value = values.get(key)
        if isinstance(value, str) and re.search(r"\s", value):
            out.append(Problem(key, f"{value!r} contains whitespace; a multi-process launch (torchrun) "
                                    "splits arguments on whitespace: use a path without spaces, or "
                                    "train in one process"))
    return out


def run(cmd: Command, log_path: Path, *, on_line: Callable[[str], None],
        on_tick: Callable[[], None] | None = None, append: bool = False) -> ChildResult:
    """Run `cmd`: every line of its output goes to `log_path` (after a `$ command` line; appended for
    a resumed run) and to `on_line`."""
    with log_path.open("a" if append else "w", encoding="utf-8") as log_file:
        log_file.write(f"$ {cmd.shell_line()}\n")

        def log_line(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()
            on_line(line)

        return run_child(cmd.argv, env_overlay=cmd.env, cwd=cmd.cwd, on_line=log_line, on_tick=on_tick)


def failure(what: str, result: ChildResult, log_path: Path) -> ChildFailedError:
    """The error for a failed child: `what`, its root error, its exit code, last lines and log."""
    cause = result.root_error()
    return ChildFailedError(what + (f": {cause}" if cause else ""), result.exit_code,
                            output_tail=list(result.tail)[-C.FAILURE_TAIL_LINES:], log=log_path)

"""Plan a training launch: validated config, final YAML, argv and environment. Nothing runs here.

`prepare()` does every check that can fail before a process starts (config rules, this machine,
datasets and their token budget, paths, resume policy) and returns a `LaunchPlan`. `launch_env()`
is the pure part that decides the launcher variables; the unit tests assert it directly.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from glmocr_lf import constants as C
from glmocr_lf.config.check import machine_problems
from glmocr_lf.config.load import from_flat, load_config
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.config.render import Rendered, adapt, to_yaml
from glmocr_lf.errors import ConfigError, LaunchError, Problem
from glmocr_lf.kernels import KernelsMode
from glmocr_lf.machine import Gpu
from glmocr_lf.versions import Stack

RUN_YAML = "glmocr_lf_train.yaml"
RUN_RECORD = "glmocr_lf_run.json"
OUR_FILES = {RUN_YAML, RUN_RECORD}
DEEPSPEED_PRESETS = {"z2": "z2", "z3": "z3", "z3-offload": "z3_offload"}
DEFAULT_MASTER_PORT = 29500
ResumeMode = Literal["resume", "fresh"]


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


@dataclass
class LaunchRequest:
    config: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    topology: Topology = field(default_factory=Topology)
    resume: ResumeMode | None = None
    memory_budget_gib: float | None = None
    hub: Literal["hf", "modelscope"] = "hf"
    check_data: bool = True
    dry_run: bool = False
    kernels: KernelsMode = "auto"


@dataclass
class LaunchPlan:
    config: TrainConfig
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    output_dir: Path
    yaml_path: Path
    yaml_text: str
    notes: list[str] = field(default_factory=list)
    removals: list[Path] = field(default_factory=list)
    resume_from: Path | None = None

    def shell_line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        cmd = " ".join(shlex.quote(a) for a in self.argv)
        return f"cd {shlex.quote(str(self.cwd))} && {env + ' ' if env else ''}{cmd}"


def launch_env(topology: Topology, *, visible_gpus: int, stack: Stack,
               hub: str = "hf") -> tuple[dict[str, str], list[str]]:
    """The environment overlay for `llamafactory-cli train`, and what to tell the user about it."""
    env: dict[str, str] = {}
    notes: list[str] = []
    nproc = topology.processes_per_node(visible_gpus)
    if topology.gpus is not None:
        env[C.ENV_CUDA_VISIBLE_DEVICES] = ",".join(str(g) for g in topology.gpus)
    needs_torchrun = nproc > 1 or topology.deepspeed is not None or topology.nnodes > 1
    if needs_torchrun:
        env[C.ENV_FORCE_TORCHRUN] = "1"
        env[C.ENV_NNODES] = str(topology.nnodes)
        env[C.ENV_NODE_RANK] = str(topology.node_rank)
        env[C.ENV_NPROC_PER_NODE] = str(nproc)
        if topology.master_addr:
            env[C.ENV_MASTER_ADDR] = topology.master_addr
        if topology.master_port is not None:
            env[C.ENV_MASTER_PORT] = str(topology.master_port)
        elif topology.nnodes > 1:
            # LLaMA-Factory picks a random free port on each node otherwise: nodes never meet
            env[C.ENV_MASTER_PORT] = str(DEFAULT_MASTER_PORT)
    rejects = stack.llamafactory_rejects()
    if rejects:
        env[C.ENV_DISABLE_VERSION_CHECK] = "1"
        notes.append("DISABLE_VERSION_CHECK=1: llamafactory would refuse " + "; ".join(rejects))
    if hub == "modelscope":
        env[C.ENV_USE_MODELSCOPE_HUB] = "1"
    return env, notes


def validate_topology(topology: Topology) -> list[Problem]:
    out = []
    if topology.nnodes < 1:
        out.append(Problem("--nnodes", "must be at least 1"))
    if not 0 <= topology.node_rank < max(topology.nnodes, 1):
        out.append(Problem("--node-rank", f"must be between 0 and {topology.nnodes - 1} for --nnodes {topology.nnodes}"))
    if topology.nnodes > 1 and not topology.master_addr:
        out.append(Problem("--master-addr", "multi-node training needs the address of node 0 on every node"))
    if topology.nproc is not None and topology.nproc < 1:
        out.append(Problem("--nproc", "must be at least 1"))
    if topology.gpus is not None and topology.nproc is not None and topology.nproc > len(topology.gpus):
        out.append(Problem("--nproc", f"{topology.nproc} processes but only {len(topology.gpus)} GPUs in --gpus"))
    if topology.master_port is not None and not 0 < topology.master_port < 65536:
        out.append(Problem("--master-port", "must be a TCP port (1-65535)"))
    return out


def resolve_deepspeed(value: str) -> Path:
    from glmocr_lf.resources import deepspeed_config

    if value in DEEPSPEED_PRESETS:
        return deepspeed_config(DEEPSPEED_PRESETS[value])
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise LaunchError(f"--deepspeed {value}: no such file; use z2, z3, z3-offload or a JSON path")
    return path


def apply_hub(values: dict[str, Any], hub: str) -> list[str]:
    """ModelScope needs its package and knows GLM-OCR as ZhipuAI/GLM-OCR, not zai-org/GLM-OCR."""
    if hub != "modelscope":
        return []
    from glmocr_lf.versions import installed

    if installed("modelscope") is None:
        raise LaunchError("--hub modelscope needs the modelscope package",
                          hint="pip install 'modelscope>=1.14.0'")
    if values.get("model_name_or_path") == C.HF_MODEL_ID:
        values["model_name_or_path"] = C.MODELSCOPE_MODEL_ID
        return [f"model_name_or_path: {C.HF_MODEL_ID} -> {C.MODELSCOPE_MODEL_ID} (its ModelScope id)"]
    return []


def checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _is_local_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or Path(value).expanduser().exists()


def _absolute(value: str | None) -> str | None:
    if value is None:
        return None
    return str(Path(value).expanduser().resolve())


def absolutize(values: dict[str, Any]) -> None:
    """Make every path LLaMA-Factory resolves against its working directory absolute."""
    for key in ("dataset_dir", "media_dir", "output_dir", "tokenized_path", "deepspeed", "cache_dir",
                "resume_from_checkpoint"):
        if values.get(key):
            values[key] = _absolute(values[key])
    for key in ("model_name_or_path", "adapter_name_or_path"):
        value = values.get(key)
        if isinstance(value, str) and _is_local_path(value):
            values[key] = ",".join(str(_absolute(v)) for v in value.split(","))


def whitespace_problems(values: dict[str, Any], config_path: Path) -> list[Problem]:
    """LLaMA-Factory's torchrun relaunch joins and re-splits its argv on whitespace."""
    out = []
    if re.search(r"\s", str(config_path.resolve())):
        out.append(Problem(str(config_path), "path contains whitespace; LLaMA-Factory's launcher splits "
                                             "arguments on whitespace: move or rename it"))
    for key in ("model_name_or_path", "adapter_name_or_path", "dataset_dir", "media_dir", "output_dir",
                "tokenized_path", "deepspeed", "resume_from_checkpoint"):
        value = values.get(key)
        if isinstance(value, str) and re.search(r"\s", value):
            out.append(Problem(key, f"{value!r} contains whitespace; LLaMA-Factory's launcher splits "
                                    "arguments on whitespace: use a path without spaces"))
    return out


def check_model(values: dict[str, Any]) -> list[Problem]:
    """A local model dir must be a GLM-OCR checkpoint with a complete processor."""
    from glmocr_lf.modelfiles import model_dir_problems

    name = values.get("model_name_or_path")
    if not isinstance(name, str) or not name.startswith("/"):
        return []
    return [Problem("model.model_name_or_path", p) for p in model_dir_problems(Path(name))]


def llamafactory_cli() -> str:
    import shutil

    beside = Path(sys.executable).parent / "llamafactory-cli"
    if beside.exists():
        return str(beside)
    found = shutil.which("llamafactory-cli")
    if not found:
        raise LaunchError("llamafactory-cli is not installed",
                          hint="install the training stack: `make install`, or see README § Install")
    return found


def _resume_policy(output_dir: Path, mode: ResumeMode | None, values: dict[str, Any],
                   notes: list[str]) -> tuple[list[Path], Path | None]:
    """Decide what happens to an existing output dir; returns (paths to remove, checkpoint to resume)."""
    existing = [p for p in output_dir.iterdir() if p.name not in OUR_FILES] if output_dir.is_dir() else []
    found = checkpoints(output_dir) if output_dir.is_dir() else []
    if mode == "resume":
        # transformers writes trainer_state.json last: without it a checkpoint was cut short
        complete = [c for c in found if (c / "trainer_state.json").is_file()]
        if not complete:
            raise LaunchError(f"{output_dir}: no complete checkpoint-N to resume from",
                              hint="drop --resume to start a new run")
        for partial in found[found.index(complete[-1]) + 1:]:
            notes.append(f"skipping {partial.name}: incomplete (the run stopped while saving it)")
        values["resume_from_checkpoint"] = str(complete[-1])
        values["overwrite_output_dir"] = False
        notes.append(f"resuming from {complete[-1]}")
        return [], complete[-1]
    if mode == "fresh":
        values["overwrite_output_dir"] = True
        values["resume_from_checkpoint"] = None
        removals = [*found, *(p for p in (output_dir / "trainer_log.jsonl",) if p.exists())]
        if removals:
            notes.append(f"--fresh: removing {len(removals)} earlier checkpoint(s)/log(s) in {output_dir}")
        return removals, None
    if existing:
        what = f"checkpoint {found[-1].name}" if found else f"{len(existing)} file(s)"
        raise LaunchError(f"{output_dir} already holds a run ({what})",
                          hint="pass --resume to continue from its last checkpoint, or --fresh to start over")
    return [], None


def prepare(request: LaunchRequest, *, stack: Stack | None = None,
            gpus: tuple[Gpu, ...] | None = None) -> LaunchPlan:
    from glmocr_lf import machine

    stack = stack or Stack.detect()
    gpus = machine.gpus() if gpus is None else gpus
    topology = request.topology
    problems = validate_topology(topology)
    if problems:
        raise ConfigError("train options", problems)
    cfg = load_config(request.config, request.overrides)

    notes: list[str] = []
    blocking = machine_problems(cfg, gpus)
    if blocking and not request.dry_run:
        raise ConfigError(str(request.config), blocking)
    notes.extend(f"{p.path}: {p.message}" for p in blocking)
    values = cfg.flat()
    if topology.deepspeed is not None:
        values["deepspeed"] = str(resolve_deepspeed(topology.deepspeed))
    if not values.get("output_dir"):
        raise ConfigError(str(request.config), [Problem("output.output_dir", "required to launch training")])
    notes.extend(apply_hub(values, request.hub))
    values.setdefault("dataset_dir", "data")
    values.setdefault("template", C.TEMPLATE)
    absolutize(values)
    output_dir = Path(values["output_dir"])
    problems = whitespace_problems(values, request.config) + check_model(values)
    if problems:
        raise ConfigError(str(request.config), problems)

    max_tokens = None
    if request.check_data:
        from glmocr_lf.train.datacheck import check_datasets

        data = check_datasets(from_flat(values, str(request.config)))
        notes.extend(data.notes)
        max_tokens = data.max_tokens

    from glmocr_lf.kernels import LIGER_DIST, decide
    from glmocr_lf.train.fit import fit_to_hardware
    from glmocr_lf.versions import installed

    kernels = decide(request.kernels, gpus=gpus, liger_version=installed(LIGER_DIST), environ=os.environ)
    notes.extend(kernels.notes)
    fit = fit_to_hardware(cfg, values, gpus=gpus, memory_budget_gib=request.memory_budget_gib,
                          processes=topology.processes_per_node(len(gpus)) * topology.nnodes,
                          tokens_per_sample=max_tokens, nodes=topology.nnodes,
                          kernels=kernels.on and "flce" in kernels.pieces)
    values.update(fit.values)
    notes.extend(fit.reasons)

    removals, resume_from = _resume_policy(output_dir, request.resume, values, notes)
    final = from_flat(values, str(request.config))

    rendered: Rendered = adapt(final, stack)
    notes.extend(rendered.notes)
    yaml_path = output_dir / RUN_YAML
    header = (f"Written by glmocr-lf for this run ({datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}) "
              f"from {request.config.resolve()}.\nThis is exactly what llamafactory-cli train read.")
    env, env_notes = launch_env(topology, visible_gpus=len(gpus), stack=stack, hub=request.hub)
    env.update(fit.env)
    env.update(kernels.env)
    notes.extend(env_notes)
    return LaunchPlan(
        config=final,
        argv=[llamafactory_cli(), "train", str(yaml_path)],
        env=env,
        cwd=Path(os.getcwd()),
        output_dir=output_dir,
        yaml_path=yaml_path,
        yaml_text=to_yaml(rendered, comments=False, header=header),
        notes=notes,
        removals=removals,
        resume_from=resume_from,
    )

"""Plan a training launch: every check that can fail before a process starts, then the final YAML,
argv and environment.

`prepare()` validates the config and the options, checks this machine (nvidia-smi; torchrun and
DeepSpeed for the launch shape asked for), the model dir, every sample of the datasets and the
token budget, and decides the resume policy. Each planning step reads the typed config and returns
its changes with their reasons; they are applied once and the result is validated once. Nothing is
written and nothing is started here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.config.check import config_warnings, machine_problems
from glmocr_lf.config.load import apply_changes, load_config
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.config.render import adapt, to_yaml
from glmocr_lf.kernels import (
    LIGER_DIST,
    CompileMode,
    KernelsMode,
    compile_unmeasured,
    decide,
    with_compile,
)
from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime import launch, records
from glmocr_lf.runtime.errors import ConfigError, LaunchError, Problem
from glmocr_lf.runtime.fsutil import check_dir_target
from glmocr_lf.runtime.launch import Command, Topology
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack, installed
from glmocr_lf.train.changes import Changes
from glmocr_lf.train.tracking import tracking_defaults

OUR_FILES = {C.TRAIN_YAML, records.TRAIN_RECORD}
DEEPSPEED_PRESETS = {"z2": "z2", "z3": "z3", "z3-offload": "z3_offload"}
ResumeMode = Literal["resume", "fresh"]
# Keys LLaMA-Factory resolves against its working directory.
RELATIVE_PATH_KEYS = ("dataset_dir", "media_dir", "output_dir", "tokenized_path", "deepspeed", "cache_dir",
                      "resume_from_checkpoint")


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
    compile: CompileMode = "auto"


@dataclass
class LaunchPlan:
    config: TrainConfig
    command: Command
    output_dir: Path
    yaml_path: Path
    yaml_text: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    removals: list[Path] = field(default_factory=list)
    resume_from: Path | None = None

    @property
    def argv(self) -> list[str]:
        return self.command.argv

    @property
    def env(self) -> dict[str, str]:
        return self.command.env

    def shell_line(self) -> str:
        return self.command.shell_line()


def resolve_deepspeed(value: str) -> Path:
    from glmocr_lf.runtime.resources import deepspeed_config

    if value in DEEPSPEED_PRESETS:
        return deepspeed_config(DEEPSPEED_PRESETS[value])
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise LaunchError(f"--deepspeed {value}: no such file; use z2, z3, z3-offload or a JSON path")
    return path


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def _local_model(value: str | None) -> str | None:
    """A model value that names local directories, made absolute; None for a hub id."""
    if not isinstance(value, str):
        return None
    if value.startswith((".", "/", "~")) or Path(value).expanduser().exists():
        return ",".join(_absolute(v) for v in value.split(","))
    return None


def defaults_and_paths(cfg: TrainConfig, request: LaunchRequest) -> Changes:
    """Absolute paths for everything LLaMA-Factory resolves against its working directory, and the
    keys a launch needs (dataset_dir, template, the model id of the chosen hub)."""
    changes = Changes()
    values = cfg.flat()
    values.setdefault("dataset_dir", C.DATA_DIR)
    for key in RELATIVE_PATH_KEYS:
        if values.get(key):
            changes.values[key] = _absolute(str(values[key]))
    for key in ("model_name_or_path", "adapter_name_or_path"):
        local = _local_model(values.get(key))
        if local is not None:
            changes.values[key] = local
    if request.topology.deepspeed is not None:
        changes.values["deepspeed"] = str(resolve_deepspeed(request.topology.deepspeed))
    if cfg.dataset.template is None:
        changes.values["template"] = C.TEMPLATE
    model, note = launch.hub_model_id(cfg.model.model_name_or_path, request.hub)
    if note:
        changes.values["model_name_or_path"] = model
        changes.reasons.append(note)
    return changes


def check_model(cfg: TrainConfig, hub: str) -> list[Problem]:
    """A local model dir must be a GLM-OCR checkpoint with a complete processor; a Hugging Face id
    must be in the cache unless the hub can be reached (LLaMA-Factory loads the tokenizer first)."""
    from glmocr_lf.runtime.modelfiles import model_dir_problems, not_cached_fix, uncached_hub_model

    name = cfg.model.model_name_or_path
    local = _local_model(name)
    if local is not None:
        return [Problem("model.model_name_or_path", p) for p in model_dir_problems(Path(local))]
    missing = uncached_hub_model(name) if hub == "hf" else None
    if missing:
        return [Problem("model.model_name_or_path", f"{missing}; LLaMA-Factory would fail to load its "
                                                    f"tokenizer. Fix: {not_cached_fix(name)}")]
    return []


def gpu_list_problems(topology: Topology, gpus: tuple[Gpu, ...]) -> list[Problem]:
    """--gpus naming GPUs this machine does not have (with none at all, LLaMA-Factory would start
    one CPU process per listed GPU without a word)."""
    if topology.gpus is None:
        return []
    wanted = ",".join(str(g) for g in topology.gpus)
    if not gpus:
        return [Problem("--gpus", f"{wanted}: this machine has no NVIDIA GPU (nvidia-smi lists none); "
                                  "drop --gpus to train on the CPU")]
    have = {g.index for g in gpus}
    missing = [g for g in topology.gpus if g not in have]
    if missing:
        return [Problem("--gpus", f"{wanted}: no GPU {missing[0]} on this machine (it has "
                                  f"{', '.join(str(i) for i in sorted(have))})")]
    return []


def checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resume_policy(output_dir: Path, mode: ResumeMode | None) -> tuple[Changes, list[Path], Path | None]:
    """What happens to an existing output dir: (changes, paths to remove, checkpoint to resume)."""
    changes = Changes()
    existing = [p for p in output_dir.iterdir() if p.name not in OUR_FILES] if output_dir.is_dir() else []
    found = checkpoints(output_dir) if output_dir.is_dir() else []
    if mode == "resume":
        # transformers writes trainer_state.json last: without it a checkpoint was cut short
        complete = [c for c in found if (c / "trainer_state.json").is_file()]
        if not complete:
            raise LaunchError(f"{output_dir}: no complete checkpoint-N to resume from",
                              hint="drop --resume to start a new run")
        for partial in found[found.index(complete[-1]) + 1:]:
            changes.reasons.append(f"skipping {partial.name}: incomplete (the run stopped while saving it)")
        changes.values.update(resume_from_checkpoint=str(complete[-1]), overwrite_output_dir=False)
        changes.reasons.append(f"resuming from {complete[-1]}")
        return changes, [], complete[-1]
    if mode == "fresh":
        changes.values.update(overwrite_output_dir=True, resume_from_checkpoint=None)
        removals = [*found, *(p for p in (output_dir / "trainer_log.jsonl", output_dir / C.TRAIN_LOG)
                              if p.exists())]
        if removals:
            changes.reasons.append(f"--fresh: removing {len(removals)} earlier checkpoint(s)/log(s) in {output_dir}")
        return changes, removals, None
    if existing:
        what = f"checkpoint {found[-1].name}" if found else f"{len(existing)} file(s)"
        raise LaunchError(f"{output_dir} already holds a run ({what})",
                          hint="pass --resume to continue from its last checkpoint, or --fresh to start over")
    return changes, [], None


def prepare(request: LaunchRequest, *, stack: Stack | None = None,
            gpus: tuple[Gpu, ...] | None = None) -> LaunchPlan:
    from glmocr_lf.runtime import machine
    from glmocr_lf.train.fit import fit_to_hardware, optimizer_steps

    stack = stack or Stack.detect()
    gpus = machine.gpus() if gpus is None else gpus
    topology = request.topology
    source = str(request.config)
    option_problems = topology.problems()
    if option_problems:
        raise ConfigError("train options", option_problems)
    cfg = load_config(request.config, request.overrides)
    if not cfg.output.output_dir:
        raise ConfigError(source, [Problem("output.output_dir", "required to launch training")])
    check_dir_target(Path(cfg.output.output_dir).expanduser(), "output_dir")

    notes: list[str] = []
    warnings = [f"{p.path}: {p.message}" for p in config_warnings(cfg)]
    blocking = machine_problems(cfg, gpus, stack)
    launcher_problems, launcher = launch.launcher_overlay(topology, visible_gpus=len(gpus),
                                                          config_deepspeed=cfg.flat().get("deepspeed"))
    options_blocking = gpu_list_problems(topology, gpus) + launcher_problems
    if request.dry_run:
        notes.extend(f"{p.path}: {p.message}" for p in options_blocking + blocking)
        options_blocking, blocking = [], []
    if options_blocking:
        raise ConfigError("train options", options_blocking)
    memory_budget = request.memory_budget_gib
    if memory_budget is not None and not gpus:
        warnings.append(f"--memory-budget {memory_budget:g} GiB ignored: this machine has no NVIDIA GPU "
                        "and the budget sizes batches for GPU memory (the CPU run keeps its settings)")
        memory_budget = None
    changes = defaults_and_paths(cfg, request)
    changes.add(tracking_defaults(cfg, stack, os.environ))
    spaced = (launch.whitespace_problems({**cfg.flat(), **changes.values})
              if topology.needs_torchrun(len(gpus)) else [])
    problems = [*blocking, *spaced, *check_model(cfg, request.hub)]
    if problems:
        raise ConfigError(source, problems)

    max_tokens = train_samples = None
    if request.check_data:
        from glmocr_lf.train.datacheck import check_datasets

        data = check_datasets(cfg)
        notes.extend(data.notes)
        max_tokens, train_samples = data.max_tokens, data.train_samples
    kernels = decide(request.kernels, gpus=gpus, liger_version=installed(LIGER_DIST), environ=os.environ)
    processes = topology.processes_per_node(len(gpus)) * topology.nnodes
    changes.add(fit_to_hardware(cfg, gpus=gpus, memory_budget_gib=memory_budget,
                                processes=processes, tokens_per_sample=max_tokens, nodes=topology.nnodes,
                                kernels=kernels.on and "flce" in kernels.pieces))
    output_dir = Path(changes.values["output_dir"])
    resume, removals, resume_from = resume_policy(output_dir, request.resume)
    changes.add(resume)
    notes.extend(changes.reasons)
    final = apply_changes(cfg, changes.values, source)
    values = final.flat()
    kernels = with_compile(kernels, request.compile, steps=optimizer_steps(values, train_samples, processes),
                           method=final.finetuning_type, environ=os.environ,
                           unmeasured=compile_unmeasured(values, processes))
    notes.extend(kernels.notes)

    rendered = adapt(final, stack)
    notes.extend(rendered.notes)
    yaml_path = output_dir / C.TRAIN_YAML
    header = (f"Written by glmocr-lf for this run ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}) "
              f"from {request.config.resolve()}.\nThis is exactly what llamafactory-cli train read.")
    common = launch.common_overlay(stack, request.hub)
    torchrun = launch.torchrun_overlay(topology, visible_gpus=len(gpus))
    env = {**common.env, **torchrun.env, **launcher.env, **changes.env, **kernels.env}
    notes.extend(common.notes + launcher.notes)
    return LaunchPlan(
        config=final,
        command=launch.command("train", yaml_path, env, Path(os.getcwd()), dry_run=request.dry_run),
        output_dir=output_dir,
        yaml_path=yaml_path,
        yaml_text=to_yaml(rendered, comments=False, header=header),
        notes=notes,
        warnings=warnings,
        removals=removals,
        resume_from=resume_from,
    )

"""Plan a training launch: the context is built once, every planning step reads the typed config and
that context and returns its changes with their reasons; they are applied once and the result is
validated once; then one checks phase gathers every problem (options, config rules, machine, model,
data) so they are all reported in one run, by `train` and by `train --dry-run` alike.

Building the context probes the machine (nvidia-smi through the host, package metadata) and reads
every sample of the datasets; loading the config may start the key-table child once per installed
LLaMA-Factory (config/lfkeys.py); checking a hub model may ask the hub whether it is reachable.
Nothing is written and no training process is started here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from glmocr_lf.config.check import config_warnings
from glmocr_lf.config.load import apply_changes, load_config
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.config.render import adapt, to_yaml
from glmocr_lf.config.rules import machine_problems
from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime import launch
from glmocr_lf.runtime.errors import (
    ConfigError,
    GlmocrLfError,
    LaunchError,
    Problem,
    Refused,
)
from glmocr_lf.runtime.fsutil import check_dir_target
from glmocr_lf.runtime.host import Host
from glmocr_lf.runtime.launch import Command
from glmocr_lf.train.changes import Changes
from glmocr_lf.train.context import LaunchRequest, PlanContext, ResumeMode, build_context
from glmocr_lf.train.fit import fit_to_hardware, optimizer_steps
from glmocr_lf.train.kernels import compile_unmeasured, with_compile
from glmocr_lf.train.outdir import node_file, resume_policy
from glmocr_lf.train.tracking import tracking_defaults

__all__ = ["LaunchPlan", "LaunchRequest", "ResumeMode", "prepare"]
DEEPSPEED_PRESETS = {"z2": "z2", "z3": "z3", "z3-offload": "z3_offload"}
# Keys LLaMA-Factory resolves against its working directory.
RELATIVE_PATH_KEYS = ("dataset_dir", "media_dir", "output_dir", "tokenized_path", "deepspeed", "cache_dir",
                      "resume_from_checkpoint")
OPTIONS = "train options"  # where problems with the command's options are reported
Step = Callable[[TrainConfig, PlanContext], Changes]


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
    problems: list[GlmocrLfError] = field(default_factory=list)  # the launch is refused while any
    node_rank: int = 0
    nnodes: int = 1

    @property
    def log_path(self) -> Path:
        """llamafactory-cli's whole output on this node: train.log on node 0, train.nodeN.log on node N."""
        return self.output_dir / node_file(C.TRAIN_LOG, self.node_rank)

    @property
    def argv(self) -> list[str]:
        return self.command.argv

    @property
    def env(self) -> dict[str, str]:
        return self.command.env

    def shell_line(self) -> str:
        return self.command.shell_line()

    def refusal(self) -> Refused | None:
        return Refused(self.problems) if self.problems else None


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


def check_model(cfg: TrainConfig, hub: C.Hub) -> list[Problem]:
    """A local model dir must be a GLM-OCR checkpoint with a complete processor; a Hugging Face id
    must be in the cache unless the hub can be reached (LLaMA-Factory loads the tokenizer first)."""
    from glmocr_lf.runtime.modelfiles import model_problems

    name = cfg.model.model_name_or_path
    local = _local_model(name)
    return [Problem("model.model_name_or_path", p) for p in model_problems(local or name, hub=hub)]


def gpu_list_problems(context: PlanContext) -> list[Problem]:
    """--gpus naming GPUs this machine does not have (with none at all, LLaMA-Factory would start
    one CPU process per listed GPU without a word)."""
    topology, gpus = context.topology, context.gpus
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


def defaults_and_paths(cfg: TrainConfig, context: PlanContext) -> Changes:
    """Absolute paths for everything LLaMA-Factory resolves against its working directory, and the
    keys a launch needs (dataset_dir, template, the model id of the chosen hub)."""
    changes = Changes()
    values = {"dataset_dir": C.DATA_DIR, **cfg.flat()}
    for key in RELATIVE_PATH_KEYS:
        if values.get(key):
            changes.values[key] = _absolute(str(values[key]))
    for key in ("model_name_or_path", "adapter_name_or_path"):
        local = _local_model(values.get(key))
        if local is not None:
            changes.values[key] = local
    try:
        if context.topology.deepspeed is not None:
            changes.values["deepspeed"] = str(resolve_deepspeed(context.topology.deepspeed))
        model, note = launch.hub_model_id(cfg.model.model_name_or_path, context.request.hub,
                                          modelscope=context.host.installed("modelscope"))
    except LaunchError as exc:
        changes.problems.append(exc)
        return changes
    if cfg.dataset.template is None:
        changes.values["template"] = C.TEMPLATE
    if note:
        changes.values["model_name_or_path"] = model
        changes.reasons.append(note)
    return changes


def tracking(cfg: TrainConfig, context: PlanContext) -> Changes:
    return tracking_defaults(cfg, context.stack, context.environ)


# In order; each reads the config as loaded and the context, none sees another's changes.
STEPS: tuple[Step, ...] = (defaults_and_paths, tracking, fit_to_hardware, resume_policy)


def kernels_and_compile(final: TrainConfig, context: PlanContext) -> Changes:
    """The kernels the context allows, with `compile` decided on the final values (the run's length)."""
    steps = optimizer_steps(final, context.data.train_samples if context.data else None, context.processes)
    kernels = with_compile(context.kernels, context.request.compile, steps=steps, method=final.finetuning_type,
                           unmeasured=compile_unmeasured(final, context.processes), environ=context.environ)
    return Changes(env=dict(kernels.env), reasons=list(kernels.notes), problems=list(kernels.problems))


def option_problems(final: TrainConfig, context: PlanContext) -> list[GlmocrLfError]:
    """The command's options against this machine: the topology, --gpus, torchrun and DeepSpeed."""
    launcher, _ = launch.launcher_overlay(context.topology, context.host, final.method.deepspeed)
    problems = context.topology.problems() + gpu_list_problems(context) + launcher
    return [ConfigError(OPTIONS, problems)] if problems else []


def config_problems(final: TrainConfig, context: PlanContext) -> list[GlmocrLfError]:
    """The config on this machine: the rule table's machine rules, paths torchrun would split, the model."""
    out: list[GlmocrLfError] = []
    try:
        check_dir_target(Path(str(final.output.output_dir)), "output_dir")
    except GlmocrLfError as exc:
        out.append(exc)
    spaced = launch.whitespace_problems(final.flat()) if context.torchrun else []
    problems = [*machine_problems(final, context.host), *spaced, *check_model(final, context.request.hub)]
    out.extend([ConfigError(context.source, problems)] if problems else [])
    if context.host.executable(launch.LLAMAFACTORY_CLI) is None:
        out.append(LaunchError(f"{launch.LLAMAFACTORY_CLI} is not installed",
                               hint="install the training stack: `make install`, or see README § Install"))
    return out


def data_problems(context: PlanContext) -> list[GlmocrLfError]:
    """What the data check (run once, while building the context) refused."""
    return [context.data_error] if context.data_error else []


def load(request: LaunchRequest) -> TrainConfig:
    """The config with the overrides; refused, with the option problems, when nothing can be planned."""
    topology = request.topology.problems()
    options: list[GlmocrLfError] = [ConfigError(OPTIONS, topology)] if topology else []
    try:
        cfg = load_config(request.config, request.overrides)
    except ConfigError as exc:
        raise Refused([*options, exc]) from None
    if not cfg.output.output_dir:
        missing = Problem("output.output_dir", "required to launch training")
        raise Refused([*options, ConfigError(str(request.config), [missing])])
    return cfg


def prepare(request: LaunchRequest, *, host: Host | None = None,
            environ: dict[str, str] | None = None) -> LaunchPlan:
    """The launch plan, with every problem found (`plan.problems`: the launch is refused while any).
    Raises NothingToDo for `--resume` of a run that already reached its last step."""
    cfg = load(request)
    context = build_context(cfg, request, host or Host.detect(), environ)
    changes = Changes()
    for step in STEPS:
        changes.add(step(cfg, context))
    final = apply_changes(cfg, changes.values, context.source)  # validated once, on the final values
    changes.add(kernels_and_compile(final, context))
    problems = [*option_problems(final, context), *config_problems(final, context), *changes.problems,
                *data_problems(context)]
    return assemble(final, context, changes, problems)


def assemble(final: TrainConfig, context: PlanContext, changes: Changes,
             problems: list[GlmocrLfError]) -> LaunchPlan:
    """The command, environment and YAML of the plan, with everything the user is told about it."""
    rendered = adapt(final, context.stack)
    output_dir = Path(str(final.output.output_dir))
    yaml_path = output_dir / node_file(C.TRAIN_YAML, context.topology.node_rank)
    header = (f"Written by glmocr-lf for this run ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}) "
              f"from {context.request.config.resolve()}.\nThis is exactly what llamafactory-cli train read.")
    common = launch.common_overlay(context.stack, context.request.hub)
    torchrun = launch.torchrun_overlay(context.topology, visible_gpus=len(context.gpus))
    _, launcher = launch.launcher_overlay(context.topology, context.host, final.method.deepspeed)
    env = {**common.env, **torchrun.env, **launcher.env, **changes.env}
    cli = context.host.executable(launch.LLAMAFACTORY_CLI) or launch.LLAMAFACTORY_CLI
    resumed = final.train.resume_from_checkpoint if context.request.resume in ("resume", "auto") else None
    return LaunchPlan(
        config=final, command=launch.command("train", yaml_path, env, Path(os.getcwd()), cli=cli),
        output_dir=output_dir, yaml_path=yaml_path, yaml_text=to_yaml(rendered, comments=False, header=header),
        notes=[*(context.data.notes if context.data else []), *changes.reasons, *rendered.notes,
               *common.notes, *launcher.notes],
        warnings=[f"{p.path}: {p.message}" for p in config_warnings(final)] + budget_warnings(context),
        removals=changes.removals, resume_from=Path(resumed) if resumed else None, problems=problems,
        node_rank=context.topology.node_rank, nnodes=context.topology.nnodes)


def budget_warnings(context: PlanContext) -> list[str]:
    budget = context.request.memory_budget_gib
    if budget is None or context.gpus:
        return []
    return [f"--memory-budget {budget:g} GiB ignored: this machine has no NVIDIA GPU and the budget sizes "
            "batches for GPU memory (the CPU run keeps its settings)"]

"""`glmocr-lf train`: check everything, then run `llamafactory-cli train` with the right launcher."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from glmocr_lf.cli import terminal
from glmocr_lf.kernels import COMPILE_MODES, KERNELS_MODES, CompileMode, KernelsMode
from glmocr_lf.runtime.constants import HUBS, Hub

if TYPE_CHECKING:
    from glmocr_lf.runtime.launch import Topology
    from glmocr_lf.train.context import ResumeMode
    from glmocr_lf.train.plan import LaunchPlan
    from glmocr_lf.train.run import TrainSummary


def _gpu_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        gpus = tuple(int(part) for part in value.split(",") if part.strip() != "")
    except ValueError:
        raise click.BadParameter("a comma-separated list of GPU indexes, e.g. 0,1") from None
    if not gpus or any(g < 0 for g in gpus):
        raise click.BadParameter("a comma-separated list of GPU indexes, e.g. 0,1")
    return gpus


def topology_options(func: Any) -> Any:
    """The launch-shape options, handed to the command as one `topology` argument."""
    options = [
        click.option("--gpus", callback=_gpu_list, metavar="0,1", help="GPUs to use (sets CUDA_VISIBLE_DEVICES)."),
        click.option("--nproc", type=int, help="Processes per node [default: one per GPU]."),
        click.option("--nnodes", type=int, default=1, show_default=True, help="Number of nodes."),
        click.option("--node-rank", type=int, default=0, show_default=True, help="This node's rank."),
        click.option("--master-addr", help="Address of node 0 (multi-node)."),
        click.option("--master-port", type=int, help="Rendezvous port [default: 29500 with several nodes]."),
        click.option("--deepspeed", metavar="z2|z3|z3-offload|PATH", help="DeepSpeed ZeRO config."),
    ]
    names = ("gpus", "nproc", "nnodes", "node_rank", "master_addr", "master_port", "deepspeed")

    @functools.wraps(func)
    def with_topology(*args: Any, **kwargs: Any) -> Any:
        from glmocr_lf.runtime.launch import Topology

        return func(*args, topology=Topology(**{n: kwargs.pop(n) for n in names}), **kwargs)

    for option in reversed(options):
        with_topology = option(with_topology)
    return with_topology


class _TrainCommand(click.Command):
    """`--max_steps 3` is how other tools take overrides: name the KEY=VALUE form instead of
    Click's nearest option (which would be `--master-port`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as err:
            from glmocr_lf.config.models import KEY_SECTION

            key = err.option_name.lstrip("-").replace("-", "_")
            if key not in KEY_SECTION:
                raise
            value = "VALUE"
            for i, arg in enumerate(given):
                if arg.startswith(err.option_name + "="):
                    value = arg.partition("=")[2]
                elif arg == err.option_name and i + 1 < len(given) and not given[i + 1].startswith("-"):
                    value = given[i + 1]
            raise click.UsageError(f"No such option '{err.option_name}'; overrides are KEY=VALUE: {key}={value}",
                                   ctx) from None


@click.command("train", cls=_TrainCommand, short_help="Check everything, then run llamafactory-cli train.")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@topology_options
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in output_dir.")
@click.option("--fresh", is_flag=True,
              help="Start over in a non-empty output_dir (removes everything the earlier run left there).")
@click.option("--resume-if-any", is_flag=True,
              help="--resume when output_dir has a complete checkpoint, else --fresh (a requeued job).")
@click.option("--memory-budget", type=float, metavar="GiB", help="Fit the run into this much GPU memory.")
@click.option("--hub", type=click.Choice(HUBS), default="hf", show_default=True,
              help="Where model ids resolve (modelscope: ZhipuAI/GLM-OCR).")
@click.option("--kernels", type=click.Choice(KERNELS_MODES), default="auto", show_default=True,
              help="Fused GLM-OCR kernels (liger-kernel and torch; auto: on with a CUDA GPU and liger-kernel).")
@click.option("--compile", "compile_", type=click.Choice(COMPILE_MODES), default="auto", show_default=True,
              help="torch.compile the decoder layers (a kernels piece; auto: on a single GPU when the run "
                   "is long enough to pay back the compilation).")
@click.option("--dry-run", is_flag=True, help="Print the launch command and the YAML, and every problem; run nothing.")
@click.option("-v", "--verbose", is_flag=True,
              help="Stream llamafactory-cli's own output (it always goes to OUTPUT_DIR/train.log; node N: train.nodeN.log).")
def train(config: Path, overrides: tuple[str, ...], topology: Topology, resume: bool, fresh: bool,
          resume_if_any: bool, memory_budget: float | None, hub: Hub, kernels: KernelsMode, compile_: CompileMode, dry_run: bool,
          verbose: bool) -> None:
    """Train GLM-OCR with CONFIG (a YAML from `glmocr-lf config new`), after checking the config,
    the machine and every sample of its datasets. KEY=VALUE pairs override config keys.

    \f
    Exit code: 0 on success, 1 for a problem found before launch, otherwise llamafactory-cli's.
    """
    from glmocr_lf.config.load import parse_overrides
    from glmocr_lf.runtime.errors import NothingToDo
    from glmocr_lf.train.plan import LaunchRequest, prepare

    request = LaunchRequest(
        config=config, overrides=parse_overrides(overrides),
        topology=topology, resume=_resume_mode(resume, fresh, resume_if_any),
        memory_budget_gib=memory_budget, hub=hub,
        kernels=kernels, compile=compile_,
    )
    try:
        plan = prepare(request)
    except NothingToDo as done:
        terminal.success(f"Nothing to do: {done.message}")
        if done.hint:
            terminal.info(f"Hint: {done.hint}")
        return
    refusal = plan.refusal()
    if dry_run or refusal is None:
        for note in plan.notes:
            terminal.note(note)
        for warning in plan.warnings:
            terminal.warning(warning)
    if dry_run:
        terminal.out(plan.shell_line() + "\n")
        terminal.out(plan.yaml_text)
    if refusal is not None:
        raise refusal
    if dry_run:
        return
    terminal.info(f"$ {plan.shell_line()}")
    if plan.node_rank:
        terminal.info(f"node {plan.node_rank} of {plan.nnodes}: progress, the summary and the run's files "
                      f"are node 0's; this node's output goes to {plan.log_path}")
    summary = _run_with_progress(plan, verbose)
    _render_summary(summary, plan)


def _resume_mode(resume: bool, fresh: bool, resume_if_any: bool) -> ResumeMode | None:
    given = [name for name, on in (("--resume", resume), ("--fresh", fresh), ("--resume-if-any", resume_if_any))
             if on]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} exclude each other")
    return "resume" if resume else ("fresh" if fresh else ("auto" if resume_if_any else None))


def _run_with_progress(plan: Any, verbose: bool) -> TrainSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from glmocr_lf.train.run import Hooks, execute, log_line, log_stats

    if not terminal.is_interactive() or plan.node_rank:
        def on_log(entry: dict[str, Any]) -> None:
            line = log_line(entry)
            if line:
                terminal.info(line)

        return execute(plan, Hooks(on_line=terminal.note if verbose else _quiet, on_log=on_log))

    progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                        console=terminal.console, transient=False)
    task = progress.add_task("train", total=None, stats="")

    def on_log_live(entry: dict[str, Any]) -> None:
        # the closing summary entry has no loss: keep showing the last one
        stats = log_stats(entry) if "loss" in entry or "eval_loss" in entry else []
        progress.update(task, completed=entry.get("current_steps", 0), total=entry.get("total_steps"),
                        stats="  ".join(stats) or progress.tasks[0].fields["stats"])

    def echo(line: str) -> None:
        progress.console.print(line, markup=False, highlight=False, style="dim")

    with progress:
        return execute(plan, Hooks(on_line=echo if verbose else _quiet, on_log=on_log_live))


def _quiet(_line: str) -> None:
    """llamafactory-cli's lines go to train.log only."""


def _render_summary(summary: TrainSummary, plan: LaunchPlan) -> None:
    if plan.node_rank:
        terminal.success(f"node {plan.node_rank} of {plan.nnodes} finished; the run's summary and files are node 0's")
        terminal.info(f"  full log: {summary.log}")
        return
    from glmocr_lf.train.tracking import summary_rows

    rows = [
        ("final loss", f"{summary.final_loss:.4f}" if summary.final_loss is not None
         else f"- ({summary.no_loss_reason})" if summary.no_loss_reason else "-"),
        (f"mean train loss (steps {summary.resumed_at_step + 1}-{summary.steps}, after the resume)"
         if summary.resumed_at_step is not None else "mean train loss",
         f"{summary.train_loss:.4f}" if summary.train_loss is not None else "-"),
        ("eval loss", f"{summary.eval_loss:.4f}" if summary.eval_loss is not None else "-"),
        ("steps", f"{summary.steps}/{summary.total_steps}" if summary.steps is not None else "-"),
        ("runtime", f"{summary.runtime_s:.1f} s" if summary.runtime_s is not None else "-"),
        ("samples/s" + (" (after the resume)" if summary.resumed_at_step is not None else ""),
         f"{summary.samples_per_second:.2f}" if summary.samples_per_second is not None else "-"),
        ("model", summary.output_dir + (" (LoRA adapter)" if summary.adapter else "")),
        ("last checkpoint", summary.last_checkpoint or "-"),
        ("loss plot", summary.loss_plot or (f"- ({summary.no_plot_reason})" if summary.no_plot_reason else "-")),
        ("full log", summary.log or "-"),
        *summary_rows(plan.env, os.environ),
    ]
    terminal.success("Training finished")
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        terminal.info(f"  {name + ':':<{width}}{value}")

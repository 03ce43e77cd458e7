"""`glmocr-lf train`: check everything, then run `llamafactory-cli train` with the right launcher."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from glmocr_lf.cli import terminal

if TYPE_CHECKING:
    from glmocr_lf.train.plan import Topology
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
    options = [
        click.option("--gpus", callback=_gpu_list, metavar="0,1", help="GPUs to use (sets CUDA_VISIBLE_DEVICES)."),
        click.option("--nproc", type=int, help="Processes per node (default: one per GPU)."),
        click.option("--nnodes", type=int, default=1, show_default=True, help="Number of nodes."),
        click.option("--node-rank", type=int, default=0, show_default=True, help="This node's rank."),
        click.option("--master-addr", help="Address of node 0 (multi-node)."),
        click.option("--master-port", type=int, help="Rendezvous port (multi-node default 29500)."),
        click.option("--deepspeed", metavar="z2|z3|z3-offload|PATH", help="DeepSpeed ZeRO config."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_topology(gpus: tuple[int, ...] | None, nproc: int | None, nnodes: int, node_rank: int,
                  master_addr: str | None, master_port: int | None, deepspeed: str | None) -> Topology:
    from glmocr_lf.train.plan import Topology

    return Topology(gpus=gpus, nproc=nproc, nnodes=nnodes, node_rank=node_rank,
                    master_addr=master_addr, master_port=master_port, deepspeed=deepspeed)


@click.command("train", short_help="Check everything, then run llamafactory-cli train.")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@topology_options
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in output_dir.")
@click.option("--fresh", is_flag=True, help="Start over in a non-empty output_dir (removes its checkpoints).")
@click.option("--memory-budget", type=float, metavar="GiB", help="Fit the run into this much GPU memory.")
@click.option("--hub", type=click.Choice(["hf", "modelscope"]), default="hf", show_default=True,
              help="Where model ids resolve (modelscope: ZhipuAI/GLM-OCR).")
@click.option("--kernels", type=click.Choice(["auto", "liger", "none"]), default="auto", show_default=True,
              help="Fused GLM-OCR kernels from liger-kernel (auto: on with a CUDA GPU and liger-kernel).")
@click.option("--dry-run", is_flag=True, help="Print the launch command and the YAML; run nothing.")
def train(config: Path, overrides: tuple[str, ...], gpus: tuple[int, ...] | None, nproc: int | None,
          nnodes: int, node_rank: int, master_addr: str | None, master_port: int | None,
          deepspeed: str | None, resume: bool, fresh: bool, memory_budget: float | None, hub: str,
          kernels: str, dry_run: bool) -> None:
    """Train GLM-OCR with CONFIG (a YAML from `glmocr-lf config new`), after checking the config,
    the machine and every sample of its datasets. KEY=VALUE pairs override config keys.

    \f
    Exit code: 0 on success, 1 for a problem found before launch, otherwise llamafactory-cli's.
    """
    from glmocr_lf.config.load import parse_overrides
    from glmocr_lf.train.plan import LaunchRequest, prepare

    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    request = LaunchRequest(
        config=config, overrides=parse_overrides(overrides),
        topology=make_topology(gpus, nproc, nnodes, node_rank, master_addr, master_port, deepspeed),
        resume="resume" if resume else ("fresh" if fresh else None),
        memory_budget_gib=memory_budget, hub=hub,  # type: ignore[arg-type]
        dry_run=dry_run, kernels=kernels,  # type: ignore[arg-type]
    )
    plan = prepare(request)
    for note in plan.notes:
        terminal.note(note)
    if dry_run:
        terminal.out(plan.shell_line() + "\n")
        terminal.out(plan.yaml_text)
        return
    terminal.info(f"$ {plan.shell_line()}")
    summary = _run_with_progress(plan)
    _render_summary(summary)


def _stats(entry: dict[str, Any]) -> list[str]:
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


def _log_line(entry: dict[str, Any]) -> str | None:
    if "loss" not in entry and "eval_loss" not in entry:
        return None
    return "  ".join([f"step {entry.get('current_steps')}/{entry.get('total_steps')}", *_stats(entry)])


def _run_with_progress(plan: Any) -> TrainSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from glmocr_lf.train.run import Hooks, execute

    if not terminal.is_interactive():
        def on_log(entry: dict[str, Any]) -> None:
            line = _log_line(entry)
            if line:
                terminal.info(line)

        return execute(plan, Hooks(on_line=terminal.note, on_log=on_log))

    progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                        console=terminal.console, transient=False)
    task = progress.add_task("train", total=None, stats="")

    def on_log_live(entry: dict[str, Any]) -> None:
        # the closing summary entry has no loss: keep showing the last one
        stats = _stats(entry) if "loss" in entry or "eval_loss" in entry else []
        progress.update(task, completed=entry.get("current_steps", 0), total=entry.get("total_steps"),
                        stats="  ".join(stats) or progress.tasks[0].fields["stats"])

    with progress:
        return execute(plan, Hooks(on_line=lambda line: progress.console.print(line, markup=False,
                                                                             highlight=False, style="dim"),
                                   on_log=on_log_live))


def _render_summary(summary: TrainSummary) -> None:
    rows = [
        ("final loss", f"{summary.final_loss:.4f}" if summary.final_loss is not None else "-"),
        ("mean train loss", f"{summary.train_loss:.4f}" if summary.train_loss is not None else "-"),
        ("eval loss", f"{summary.eval_loss:.4f}" if summary.eval_loss is not None else "-"),
        ("steps", f"{summary.steps}/{summary.total_steps}" if summary.steps is not None else "-"),
        ("runtime", f"{summary.runtime_s:.1f} s" if summary.runtime_s is not None else "-"),
        ("samples/s", f"{summary.samples_per_second:.2f}" if summary.samples_per_second is not None else "-"),
        ("model", summary.output_dir + (" (LoRA adapter)" if summary.adapter else "")),
        ("last checkpoint", summary.last_checkpoint or "-"),
        ("loss plot", summary.loss_plot or "-"),
    ]
    terminal.success("Training finished")
    for name, value in rows:
        terminal.info(f"  {name + ':':<17}{value}")

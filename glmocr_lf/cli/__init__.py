"""The `glmocr-lf` command line: a thin client of the glmocr_lf library.

Heavy packages (torch, transformers, llamafactory) are imported only inside the commands that need
them, so `--help`, `config` and `data` start instantly.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from glmocr_lf import __version__
from glmocr_lf.cli import terminal
from glmocr_lf.runtime.constants import ENV_DEBUG
from glmocr_lf.runtime.errors import GlmocrLfError, Refused
from glmocr_lf.runtime.process import Interrupted


class _UserError(click.ClickException):
    """Carries a GlmocrLfError through Click so it is rendered once, without a traceback."""

    def __init__(self, err: GlmocrLfError) -> None:
        super().__init__(err.message)
        self.err = err
        self.exit_code = err.exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        tail = getattr(self.err, "output_tail", None)
        if tail:
            terminal.note(f"last {len(tail)} lines of its output:")
            for line in tail:
                terminal.note(f"  {line}")
        for err in self.err.errors if isinstance(self.err, Refused) else [self.err]:
            terminal.error(err.message)
            if err.hint:
                terminal.info(f"Hint: {err.hint}")


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get(ENV_DEBUG, "").lower() in {"1", "true", "yes"}:
        return True
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))


class GlmocrGroup(click.Group):
    """Renders our errors (exit 1, or the child's code) and keeps tracebacks for --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GlmocrLfError as err:
            if debug_enabled(ctx):
                raise
            raise _UserError(err) from None
        except KeyboardInterrupt as err:
            if debug_enabled(ctx):
                raise
            # Python's own Ctrl-C, or a signal `stop_signals_interrupt` raised: exit 128 + the signal
            name, code = (err.signal, err.exit_code) if isinstance(err, Interrupted) else ("SIGINT", 130)
            terminal.error("interrupted" if name == "SIGINT" else f"interrupted by {name}")
            ctx.exit(code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from glmocr_lf.runtime.versions import installed

    click.echo(f"glmocr-lf {__version__}")
    for dist in ("llamafactory", "transformers"):
        version = installed(dist)
        click.echo(f"{dist} {version}" if version else f"{dist} not installed")
    ctx.exit()


@click.group(cls=GlmocrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show glmocr-lf's version and the installed llamafactory and transformers.")
@click.option("--debug", is_flag=True, help=f"Show tracebacks (also {ENV_DEBUG}=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tune GLM-OCR on LLaMA-Factory: validated configs, staged datasets, training,
    export and OCR evaluation."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # light: the table itself is read only when a command needs it
    from glmocr_lf.config import lfkeys

    if lfkeys.notify is lfkeys.quiet:  # not taken over (the tests collect it)
        lfkeys.notify = terminal.note


def _register() -> None:
    from glmocr_lf.cli.config import config_group
    from glmocr_lf.cli.data import data_group
    from glmocr_lf.cli.doctor import doctor
    from glmocr_lf.cli.eval import eval_group
    from glmocr_lf.cli.export import export
    from glmocr_lf.cli.init import init
    from glmocr_lf.cli.smoke import smoke, smoke_model
    from glmocr_lf.cli.train import train

    cli.add_command(config_group)
    cli.add_command(data_group)
    cli.add_command(doctor)
    cli.add_command(eval_group)
    cli.add_command(init)
    cli.add_command(train)
    cli.add_command(export)
    cli.add_command(smoke)
    cli.add_command(smoke_model)


# One metavar per kind of value, everywhere: a model or dataset named by id or path, then click's
# types. An option that sets its own metavar (0,1; GiB; KEY=VALUE) keeps it.
_METAVAR_BY_NAME = {"model": "MODEL", "base": "MODEL", "dataset": "NAME|FILE", "image_col": "COLUMN",
                    "text_col": "COLUMN", "task_col": "COLUMN", "master_addr": "HOST", "device": "DEVICE",
                    "split": "SPLIT"}


def _metavar(param: click.Option) -> str | None:
    kind = param.type
    if isinstance(kind, click.Path):
        if kind.file_okay and not kind.dir_okay:
            return "FILE"
        return "DIR" if kind.dir_okay and not kind.file_okay else "PATH"
    if param.name in _METAVAR_BY_NAME:
        return _METAVAR_BY_NAME[param.name]
    if isinstance(kind, click.types.IntParamType):  # IntRange too
        return "N"
    if isinstance(kind, click.types.FloatParamType):
        return "X"
    return None


def _consistent_metavars(group: click.Group) -> None:
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _consistent_metavars(command)
            continue
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag and param.metavar is None \
                    and not isinstance(param.type, click.Choice):
                param.metavar = _metavar(param)


_register()
_consistent_metavars(cli)


def main() -> None:
    cli.main(prog_name="glmocr-lf", args=sys.argv[1:])

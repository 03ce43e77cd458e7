"""Every option says what it is for; a `--key value` override gets the KEY=VALUE form back."""

from __future__ import annotations

import click
from helpers import Invoke

from glmocr_lf.cli import cli


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_every_option_has_a_help_line() -> None:
    missing = [f"{name} {param.opts[0]}" for name, command in [("glmocr-lf", cli), *_commands(cli)]
               for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    assert missing == []


def test_dashed_override_gets_the_key_value_form(invoke: Invoke) -> None:
    result = invoke("train", "c.yaml", "--max_steps", "3")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: No such option '--max_steps'; overrides are KEY=VALUE: max_steps=3"


def test_equals_form_and_unknown_options(invoke: Invoke) -> None:
    result = invoke("train", "c.yaml", "--learning-rate=1e-5")
    assert result.stderr.splitlines()[-1] == ("Error: No such option '--learning-rate'; overrides are KEY=VALUE: "
                                              "learning_rate=1e-5")
    result = invoke("train", "c.yaml", "--resum")  # not a config key: Click's own suggestion stays
    assert result.stderr.splitlines()[-1] == "Error: No such option '--resum'. (Did you mean one of: '--fresh', '--resume'?)"


def test_the_same_kind_of_value_has_the_same_metavar_everywhere() -> None:
    seen: dict[str, set[str]] = {}
    for _name, command in _commands(cli):
        ctx = click.Context(command)
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                seen.setdefault(param.opts[0], set()).add(param.make_metavar(ctx))
    # --model is a model (id or folder) everywhere but in the data commands, where it is the folder
    # whose tokenizer counts tokens; --out is a folder except for `eval compare`'s report file
    assert seen.pop("--model") == {"MODEL", "DIR"}
    assert seen.pop("--out") == {"DIR", "FILE"}
    assert {opt: kinds for opt, kinds in seen.items() if len(kinds) > 1} == {}
    generic = {"TEXT", "INTEGER", "INTEGER RANGE", "FLOAT", "FLOAT RANGE", "DIRECTORY", "PATH_OR_ID"}
    assert {opt: kinds for opt, kinds in seen.items() if kinds & generic} == {
        "--prompt": {"TEXT"}}

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
    assert result.stderr.splitlines()[-1] == "Error: No such option '--resum'. (Did you mean one of: '--fresh', '--resume', '--resume-if-any'?)"


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
    # --dataset: a config's `dataset:` takes registered names only; eval also reads a file
    assert seen.pop("--dataset") == {"NAME", "NAME|FILE"}
    assert {opt: kinds for opt, kinds in seen.items() if len(kinds) > 1} == {}
    generic = {"TEXT", "INTEGER", "INTEGER RANGE", "FLOAT", "FLOAT RANGE", "DIRECTORY", "PATH_OR_ID"}
    assert {opt: kinds for opt, kinds in seen.items() if kinds & generic} == {
        "--prompt": {"TEXT"}}


def test_defaults_are_shown_one_way() -> None:
    """Click's `[default: X]` (show_default, or written so where the default is computed)."""
    written = [f"{name} {param.opts[0]}" for name, command in _commands(cli) for param in command.params
               if isinstance(param, click.Option) and "(default" in (param.help or "")]
    assert written == []


def test_every_command_with_data_dir_takes_lf_dir() -> None:
    missing = [name for name, command in _commands(cli)
               if any("--data-dir" in p.opts for p in command.params)
               and not any("--lf-dir" in p.opts for p in command.params)]
    assert missing == []


def test_no_subcommand_summary_is_cut(invoke: Invoke) -> None:
    for group in ("config", "data", "eval"):
        listing = invoke(group, "--help").stdout.split("Commands:\n")[1]
        assert "..." not in listing, listing


def test_the_data_group_names_every_source_format(invoke: Invoke) -> None:
    text = " ".join(invoke("data", "--help").stdout.split())
    for source in (".txt/.md/.html/.tex", "JSONL/CSV", "Parquet", "Arrow", "save_to_disk", "hub datasets",
                   "COCO", "OmniDocBench"):
        assert source in text, source


def test_config_validate_json(invoke: Invoke) -> None:
    import json
    from pathlib import Path

    Path("good.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\n")
    Path("bad.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\nlearning_rate: -1\n")
    result = invoke("config", "validate", "good.yaml", "bad.yaml", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {"file": "good.yaml", "valid": True, "error": None, "errors": [], "warnings": []},
        {"file": "bad.yaml", "valid": False, "error": None, "warnings": [],
         "errors": [{"key": "train.learning_rate", "message": "Input should be greater than 0"}]}]

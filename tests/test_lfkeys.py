"""Every LLaMA-Factory key: the table read from its dataclasses, its cache, and the CLI's checks."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner
from helpers import needs_stack

from glmocr_lf.cli import cli
from glmocr_lf.config import lfkeys
from glmocr_lf.runtime.paths import cache_dir
from glmocr_lf.runtime.versions import installed

MINIMAL = "model_name_or_path: zai-org/GLM-OCR\ntemplate: glm_ocr\n"
ACCEPTED = ("optim: adamw_torch_fused\nneftune_noise_alpha: 5\nsave_strategy: steps\n"
            "lr_scheduler_kwargs: {min_lr: 1.0e-6}\nweight_decay: 0.01\nseed: 7\nreport_to: tensorboard\n")


def validate(runner: CliRunner, text: str) -> tuple[int, list[str]]:
    Path("c.yaml").write_text(MINIMAL + text, encoding="utf-8")
    result = runner.invoke(cli, ["config", "validate", "c.yaml"], catch_exceptions=False)
    return result.exit_code, result.stderr.splitlines()


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with only the light install: llamafactory and transformers are not there."""
    monkeypatch.setattr(lfkeys, "stack_versions", lambda: None)


# -- the table ---------------------------------------------------------------------------------------
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(("annotation", "expected"), [
    (bool, (("boolean",), False, None)),
    (int | None, (("integer",), True, None)),
    (float, (("number",), False, None)),
    (dict | str | None, (("object", "string"), True, None)),
    (list[str], (("array",), False, None)),
    (Literal["lora", "full"], (("string",), False, ("lora", "full"))),
    (Literal["auto"] | None, (("string",), True, ("auto",))),
    (Colour | str, (("string",), False, ("red", "blue"))),  # transformers' `OptimizerNames | str`
    (str | list[Colour], (("string", "array"), False, None)),
    (Path | None, ((), True, None)),  # a class we cannot describe: anything goes
])
def test_describe_type(annotation: Any, expected: tuple[Any, ...]) -> None:
    assert lfkeys.describe_type(annotation) == expected


def test_key_spec_messages() -> None:
    spec = lfkeys.KeySpec("neftune_noise_alpha", "TrainingArguments", ("number",), True, None, None, "")
    assert spec.section == "train"
    assert spec.check(5) is None and spec.check(0.1) is None and spec.check(None) is None
    assert spec.check("abc") == "must be a float, got 'abc'"
    assert spec.check(True) == "must be a float, got True"
    choice = lfkeys.KeySpec("save_strategy", "TrainingArguments", ("string",), False, ("no", "steps"), "steps", "")
    assert choice.section == "output"
    assert choice.check("steps") is None
    assert choice.check("step") == "must be one of no, steps; got 'step'"
    assert choice.check(None) == "must not be null (a string)"


@pytest.mark.parametrize(("key", "lf_class", "section"), [
    ("quantization_bit", "ModelArguments", "model"), ("packing", "DataArguments", "dataset"),
    ("pissa_init", "FinetuningArguments", "method"), ("top_p", "GeneratingArguments", "eval"),
    ("save_strategy", "TrainingArguments", "output"), ("push_to_hub", "TrainingArguments", "output"),
    ("load_best_model_at_end", "TrainingArguments", "eval"), ("optim", "TrainingArguments", "train"),
])
def test_section_of(key: str, lf_class: str, section: str) -> None:
    assert lfkeys.section_of(key, lf_class) == section


@needs_stack
def test_cache_is_what_the_installed_llamafactory_defines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built in a child process into a fresh cache, the table equals the one derived here from the
    dataclasses of LLaMA-Factory's train parser, and holds every field that parser reads."""
    import dataclasses

    from llamafactory.hparams.parser import _TRAIN_ARGS

    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(tmp_path / "cache"))
    cached = lfkeys.load_table()
    assert isinstance(cached, lfkeys.KeyTable)
    path = lfkeys.cache_path(cached.versions)
    assert path.parent == tmp_path / "cache" and path.is_file()
    assert cached.versions == {"llamafactory": installed("llamafactory"), "transformers": installed("transformers")}
    assert cached.to_json() == lfkeys.derive_table().to_json()
    parsed = [f.name for cls in _TRAIN_ARGS for f in dataclasses.fields(cls) if f.init]
    assert list(cached.keys) == parsed
    assert [spec.lf_class for spec in cached.keys.values()] == \
        [cls.__name__ for cls in _TRAIN_ARGS for f in dataclasses.fields(cls) if f.init]


FAKE = {"llamafactory": "9.9.9", "transformers": "9.9.9"}


def fake_table(path: Path) -> None:
    spec = lfkeys.KeySpec("optim", "TrainingArguments", ("string",), False, ("sgd",), "sgd", "The optimizer")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lfkeys.KeyTable(FAKE, {"optim": spec}).to_json()))


def test_cache_is_built_once_per_version_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lfkeys, "stack_versions", lambda: dict(FAKE))
    builds: list[Path] = []

    def build(path: Path) -> None:
        builds.append(path)
        fake_table(path)

    monkeypatch.setattr(lfkeys, "build_in_child", build)
    first = lfkeys.load_table()
    assert isinstance(first, lfkeys.KeyTable) and list(first.keys) == ["optim"]
    assert builds == [tmp_path / "lf-keys-v1-llamafactory-9.9.9-transformers-9.9.9.json"]
    lfkeys._loaded.clear()  # a new process: reads the file, builds nothing
    assert lfkeys.load_table() == first
    assert len(builds) == 1
    builds[0].write_text("{not json")  # a damaged cache is rebuilt
    lfkeys._loaded.clear()
    assert lfkeys.load_table() == first
    assert len(builds) == 2


def test_failed_build_is_a_reason_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lfkeys, "stack_versions", lambda: dict(FAKE))
    monkeypatch.setattr(lfkeys, "build_in_child", lambda _path: "ImportError: no module named torch")
    table = lfkeys.load_table()
    assert table == lfkeys.Unavailable("reading LLaMA-Factory 9.9.9's arguments failed: "
                                       "ImportError: no module named torch")


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLMOCR_LF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "glmocr-lf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "glmocr-lf"
    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


# -- the CLI -----------------------------------------------------------------------------------------
@needs_stack
def test_validate_accepts_llamafactory_keys(runner: CliRunner) -> None:
    assert validate(runner, ACCEPTED) == (0, ["OK: c.yaml"])


@needs_stack
def test_mapping_keys_take_a_mapping_or_a_json_object(runner: CliRunner) -> None:
    for text in ("lr_scheduler_kwargs:\n  min_lr: 1.0e-6\n", 'lr_scheduler_kwargs: \'{"min_lr": 1e-6}\'\n',
                 "deepspeed: ds_z2.json\n"):  # deepspeed's string is a path
        assert validate(runner, text) == (0, ["OK: c.yaml"]), text


def test_building_the_table_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first config check of a version pair pauses for seconds: it is said on stderr, once."""
    monkeypatch.setenv("GLMOCR_LF_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lfkeys, "stack_versions", lambda: dict(FAKE))
    monkeypatch.setattr(lfkeys, "build_in_child", fake_table)
    monkeypatch.setattr(lfkeys, "notify", lfkeys.quiet)  # as outside the tests: the CLI says it
    monkeypatch.setattr(lfkeys, "_loaded", {})
    Path("c.yaml").write_text(MINIMAL + "optim: sgd\n")
    first = CliRunner().invoke(cli, ["config", "validate", "c.yaml"], catch_exceptions=False)
    assert first.exit_code == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"reading LLaMA-Factory 9.9.9's argument table (once per installed version, about 10 s; cached in {tmp_path})",
        "OK: c.yaml"]
    lfkeys._loaded.clear()  # a new process: the table is read from the cache, nothing to say
    again = CliRunner().invoke(cli, ["config", "validate", "c.yaml"], catch_exceptions=False)
    assert again.stderr.splitlines() == ["OK: c.yaml"]


@needs_stack
@pytest.mark.parametrize(("text", "expected"), [
    ("optm: adamw_torch\n", "  optm: unknown key; did you mean 'optim' (train section)?"),
    ("neftune_alpha: 5\n", "  neftune_alpha: unknown key; did you mean 'neftune_noise_alpha' (train section)?"),
    ("neftune_noise_alpha: abc\n", "  train.neftune_noise_alpha: must be a float, got 'abc'"),
    ("save_strategy: step\n", "  output.save_strategy: must be one of no, steps, epoch, best; got 'step'"),
    ("packing: yes please\n", "  dataset.packing: must be true or false, got 'yes please'"),
    ("lr_scheduler_kwargs: [1, 2]\n", "  train.lr_scheduler_kwargs: must be a mapping or a string, got [1, 2]"),
    # LLaMA-Factory would fail after the model load: `argument after ** must be a mapping, not str`
    ('lr_scheduler_kwargs: "min_lr=1e-6"\n', '  train.lr_scheduler_kwargs: must be a mapping or a JSON object '
                                             'string (e.g. {"min_lr": 1e-6}), got \'min_lr=1e-6\''),
])
def test_validate_refuses_with_the_fix(runner: CliRunner, text: str, expected: str) -> None:
    assert validate(runner, text) == (1, ["Error: c.yaml", expected])


@needs_stack
def test_an_unknown_optimizer_lists_the_choices(runner: CliRunner) -> None:
    code, lines = validate(runner, "optim: not_an_optimizer\n")
    assert code == 1 and lines[0] == "Error: c.yaml" and len(lines) == 2
    assert lines[1].startswith("  train.optim: must be one of adamw_torch, adamw_torch_fused, ")
    assert lines[1].endswith("; got 'not_an_optimizer'")
    assert "Traceback" not in "\n".join(lines)


@needs_stack
def test_config_new_set_takes_any_key_and_writes_it_in_its_section(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "new", "--method", "lora", "--set", "optim=adamw_torch_fused",
                                 "--set", "lr_scheduler_kwargs={min_lr: 1.0e-6}", "--set", "packing=true",
                                 "--set", "save_strategy=steps"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    sections: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line[4:], [])
        elif line and not line.startswith("#"):
            current.append(line.split(":")[0])
    assert sections["dataset"][-1] == "packing"
    assert sections["output"][-1] == "save_strategy"
    assert sections["train"][-2:] == ["optim", "lr_scheduler_kwargs"]
    assert "lr_scheduler_kwargs: {min_lr: 1.0e-06}  # The extra arguments for the lr_scheduler" in result.stdout


@needs_stack
def test_config_new_set_typo_names_the_section(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "new", "--method", "lora", "--set", "optm=sgd"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: override", "  optm: unknown key; did you mean 'optim' (train section)?"]


@needs_stack
@pytest.mark.parametrize(("override", "expected"), [
    ("optm=adamw_torch", ["Error: override", "  optm: unknown key; did you mean 'optim' (train section)?"]),
    ("neftune_noise_alpha=abc", ["Error: c.yaml", "  train.neftune_noise_alpha: must be a float, got 'abc'"]),
])
def test_train_overrides_go_through_the_same_checks(runner: CliRunner, override: str, expected: list[str]) -> None:
    Path("c.yaml").write_text(MINIMAL + "output_dir: out\n", encoding="utf-8")
    result = runner.invoke(cli, ["train", "c.yaml", override, "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == expected


@needs_stack
def test_schema_has_every_llamafactory_key(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "schema"], catch_exceptions=False)
    schema = json.loads(result.stdout)
    table = lfkeys.load_table()
    assert isinstance(table, lfkeys.KeyTable)
    assert set(schema["properties"]) == set(table.keys)
    assert schema["additionalProperties"] is False
    optim = schema["properties"]["optim"]
    assert optim["x-section"] == "train" and optim["x-llamafactory"] == "TrainingArguments"
    assert "adamw_torch_fused" in optim["enum"] and optim["default"] == table.keys["optim"].default
    assert schema["properties"]["neftune_noise_alpha"]["type"] == ["number", "null"]
    assert schema["properties"]["lora_rank"]["x-section"] == "method"  # ours, as typed


def test_without_the_stack_unknown_keys_are_warnings(runner: CliRunner, no_stack: None) -> None:
    code, lines = validate(runner, "optim: adamw_torch\nlora_rnak: 8\n")
    reason = "the training stack (llamafactory, transformers) is not installed"
    assert code == 0
    assert lines == [
        "OK: c.yaml",
        f"Warning: c.yaml: optim: not checked: install the training stack to check optim ({reason})",
        f"Warning: c.yaml: lora_rnak: not checked: install the training stack to check lora_rnak ({reason}); "
        "did you mean 'lora_rank' (method section)?",
    ]


def test_without_the_stack_the_yaml_keeps_unchecked_keys_apart(runner: CliRunner, no_stack: None) -> None:
    result = runner.invoke(cli, ["config", "new", "--method", "lora", "--set", "optim=sgd"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["### other (not checked: the training stack is not installed here)", "optim: sgd"]
    schema = json.loads(runner.invoke(cli, ["config", "schema"], catch_exceptions=False).stdout)
    assert schema["additionalProperties"] is True
    assert "optim" not in schema["properties"]

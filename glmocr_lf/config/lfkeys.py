"""Every key `llamafactory-cli train` accepts, read from the installed LLaMA-Factory's argument
dataclasses (and the transformers TrainingArguments it extends), cached per version pair.

Reading those dataclasses imports torch and transformers (several seconds), so the table is built
once per installed (llamafactory, transformers) pair, in a child process, and kept as JSON in the
user cache dir; every later run reads the JSON. Nothing here imports torch, transformers or
llamafactory except `derive_table()`, which the child (and a test) calls.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime.paths import cache_dir
from glmocr_lf.runtime.versions import installed

# Mapping-typed keys whose string form is a path to a JSON file; every other mapping-typed key
# that takes a string takes a JSON object.
MAPPING_OR_PATH = frozenset({"deepspeed", "fsdp_config", "accelerator_config"})
FORMAT = 1  # bump when derive_table() changes what it writes: older cache files are then ignored
# LLaMA-Factory's train parser, in its order (llamafactory/hparams/parser.py _TRAIN_ARGS).
LF_CLASSES = ("ModelArguments", "DataArguments", "TrainingArguments", "FinetuningArguments",
              "GeneratingArguments")
# LLaMA-Factory's dataclasses -> the `### section` of its example YAMLs that a key is written under.
_CLASS_SECTION = {"ModelArguments": "model", "DataArguments": "dataset", "FinetuningArguments": "method",
                  "GeneratingArguments": "eval"}
_OUTPUT_PREFIXES = ("output_dir", "overwrite_output_dir", "save_", "logging_", "report_to", "run_name",
                    "push_to_hub", "hub_", "project", "trackio_")
_EVAL_PREFIXES = ("eval_", "do_eval", "do_predict", "per_device_eval", "predict_with_generate",
                  "generation_", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
                  "prediction_loss_only", "batch_eval_metrics", "include_for_metrics", "compute_accuracy")
_TYPE_WORDS = {"boolean": "true or false", "integer": "an integer", "number": "a float",
               "string": "a string", "object": "a mapping", "array": "a list"}
BUILD_TIMEOUT_S = 600


def section_of(key: str, lf_class: str) -> str:
    """Our section for a LLaMA-Factory key: its dataclass, and for TrainingArguments its purpose."""
    if lf_class in _CLASS_SECTION:
        return _CLASS_SECTION[lf_class]
    if key.startswith(_OUTPUT_PREFIXES):
        return "output"
    if key.startswith(_EVAL_PREFIXES):
        return "eval"
    return "train"


@dataclass(frozen=True)
class KeySpec:
    """One key: JSON-Schema type names, whether null is allowed, the closed set of values if any."""

    name: str
    lf_class: str
    types: tuple[str, ...]  # boolean, integer, number, string, object, array; empty = anything
    nullable: bool
    choices: tuple[Any, ...] | None
    default: Any
    help: str

    @property
    def section(self) -> str:
        return section_of(self.name, self.lf_class)

    def check(self, value: Any) -> str | None:
        """Why LLaMA-Factory would not take `value` for this key, or None."""
        if value is None:
            return None if self.nullable else f"must not be null ({self.expected()})"
        if self.choices is not None:
            if any(value == choice and type(value) is type(choice) for choice in self.choices):
                return None
            listed = ", ".join(str(c) for c in self.choices)
            return f"must be one of {listed}; got {value!r}"
        if isinstance(value, str) and "object" in self.types and self.name not in MAPPING_OR_PATH:
            # transformers and LLaMA-Factory json.loads a string given for a mapping; anything else
            # fails after the model has loaded (`argument after ** must be a mapping, not str`)
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                return None
            return f'must be a mapping or a JSON object string (e.g. {{"min_lr": 1e-6}}), got {value!r}'
        if not self.types or any(_is(value, name) for name in self.types):
            return None
        return f"must be {self.expected()}, got {value!r}"

    def expected(self) -> str:
        return " or ".join(_TYPE_WORDS.get(t, t) for t in self.types) or "any value"

    def to_json(self) -> dict[str, Any]:
        return {"lf_class": self.lf_class, "types": list(self.types), "nullable": self.nullable,
                "choices": None if self.choices is None else list(self.choices),
                "default": self.default, "help": self.help}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> KeySpec:
        choices = data.get("choices")
        return cls(name, data["lf_class"], tuple(data["types"]), bool(data["nullable"]),
                   None if choices is None else tuple(choices), data.get("default"), data.get("help", ""))


def _is(value: Any, type_name: str) -> bool:
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "object":
        return isinstance(value, dict)
    if type_name == "array":
        return isinstance(value, list)
    return True


@dataclass(frozen=True)
class KeyTable:
    versions: dict[str, str]
    keys: dict[str, KeySpec]  # in LLaMA-Factory's parser order

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "versions": self.versions,
                "keys": {name: spec.to_json() for name, spec in self.keys.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyTable:
        return cls(dict(data["versions"]),
                   {name: KeySpec.from_json(name, spec) for name, spec in data["keys"].items()})


@dataclass(frozen=True)
class Unavailable:
    """Why keys outside our sections cannot be checked here."""

    reason: str


# -- deriving the table from the dataclasses (imports the training stack) --------------------------
def _json_type(tp: Any) -> str:
    for py, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                     (dict, "object"), (list, "array"), (tuple, "array")):
        if isinstance(tp, type) and issubclass(tp, py):
            return name
    return ""


def describe_type(tp: Any) -> tuple[tuple[str, ...], bool, tuple[Any, ...] | None]:
    """(JSON type names, nullable, choices) of a dataclass field's annotation. `SomeEnum | str`
    counts as closed: transformers converts the string through the enum in __post_init__."""
    members = list(typing.get_args(tp)) if typing.get_origin(tp) in (typing.Union, types.UnionType) else [tp]
    nullable = type(None) in members
    members = [m for m in members if m is not type(None)]
    names: list[str] = []
    choices: list[Any] = []
    open_members: list[Any] = []
    has_enum = False
    for member in members:
        if typing.get_origin(member) is typing.Literal:
            choices.extend(typing.get_args(member))
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            has_enum = True
            choices.extend(e.value for e in member)
        else:
            open_members.append(member)
            names.append(_json_type(typing.get_origin(member) or member))
    closed = not open_members or (has_enum and open_members == [str])
    if closed:
        names = [_json_type(type(c)) for c in choices]
    if "" in names:  # a member we cannot describe (a config object, a Path, ...): accept anything
        names = []
    unique = tuple(dict.fromkeys(names))
    return unique, nullable, (tuple(dict.fromkeys(choices)) if closed and choices else None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return _jsonable(field.default)
    if field.default_factory is not dataclasses.MISSING:
        try:
            return _jsonable(field.default_factory())
        except Exception:
            return None
    return None


def derive_table() -> KeyTable:
    """Read the installed LLaMA-Factory's train dataclasses. Imports torch and transformers."""
    from llamafactory.hparams.parser import _TRAIN_ARGS

    keys: dict[str, KeySpec] = {}
    for cls in _TRAIN_ARGS:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if not field.init:  # HfArgumentParser skips these too
                continue
            types_, nullable, choices = describe_type(hints[field.name])
            nullable = nullable or field.default is None
            help_text = " ".join(str(field.metadata.get("help", "")).split())
            keys[field.name] = KeySpec(field.name, cls.__name__, types_, nullable, choices,
                                       _default(field), help_text)
    return KeyTable(_stack_versions_or_raise(), keys)


# -- the cache -------------------------------------------------------------------------------------
def stack_versions() -> dict[str, str] | None:
    lf, tf = installed("llamafactory"), installed("transformers")
    return {"llamafactory": lf, "transformers": tf} if lf and tf else None


def _stack_versions_or_raise() -> dict[str, str]:
    versions = stack_versions()
    if versions is None:
        raise RuntimeError("llamafactory and transformers must both be installed")
    return versions


def cache_path(versions: dict[str, str]) -> Path:
    return cache_dir() / (f"lf-keys-v{FORMAT}-llamafactory-{versions['llamafactory']}"
                          f"-transformers-{versions['transformers']}.json")


def read_cache(path: Path, versions: dict[str, str]) -> KeyTable | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("versions") != versions:
            return None
        return KeyTable.from_json(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def build_in_child(path: Path) -> str | None:
    """Derive the table in a child python (DISABLE_VERSION_CHECK=1 there only: this reads field
    definitions, it trains nothing) that writes it to `path`. Returns the child's error, or None."""
    from glmocr_lf.runtime.process import run_captured

    package_root = str(Path(__file__).resolve().parents[2])
    overlay = {C.ENV_DISABLE_VERSION_CHECK: "1",
               C.ENV_PYTHONPATH: os.pathsep.join(p for p in (package_root, os.environ.get(C.ENV_PYTHONPATH)) if p)}
    proc = run_captured([sys.executable, "-m", "glmocr_lf.config.lfkeys", str(path)], env_overlay=overlay,
                        timeout_s=BUILD_TIMEOUT_S)
    if proc.error is not None:
        return proc.error
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None


_loaded: dict[Path, KeyTable] = {}


def quiet(_message: str) -> None:
    """The default `notify`: a library says nothing by itself."""


# Says that the table is being built (a pause of seconds); the CLI points it at its console.
notify: Callable[[str], None] = quiet


def load_table(*, refresh: bool = False) -> KeyTable | Unavailable:
    """The table for the installed versions: from the cache, else built now (once) and cached."""
    versions = stack_versions()
    if versions is None:
        return Unavailable("the training stack (llamafactory, transformers) is not installed")
    path = cache_path(versions)
    if not refresh and path in _loaded:
        return _loaded[path]
    table = None if refresh else read_cache(path, versions)
    if table is None:
        notify(f"reading LLaMA-Factory {versions['llamafactory']}'s argument table (once per installed "
               f"version, about 10 s; cached in {path.parent})")
        error = build_in_child(path)
        table = read_cache(path, versions)
        if table is None:
            return Unavailable(f"reading LLaMA-Factory {versions['llamafactory']}'s arguments failed: "
                               f"{error or 'no table written'}")
    _loaded[path] = table
    return table


def suggestion_pool(table: KeyTable | Unavailable) -> dict[str, str]:
    """key -> section, of every key the table knows."""
    if isinstance(table, Unavailable):
        return {}
    return {name: spec.section for name, spec in table.keys.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from glmocr_lf.runtime.fsutil import atomic_write_text

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m glmocr_lf.config.lfkeys OUTPUT.json", file=sys.stderr)
        return 2
    text = json.dumps(derive_table().to_json(), indent=1, ensure_ascii=False) + "\n"
    atomic_write_text(Path(args[0]), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

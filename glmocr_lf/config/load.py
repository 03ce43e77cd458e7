"""Read a flat LLaMA-Factory YAML into a TrainConfig, reporting every problem with its key path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from glmocr_lf.config import lfkeys
from glmocr_lf.config.lfkeys import KeyTable, Unavailable
from glmocr_lf.config.models import KEY_SECTION, SECTIONS, UNCHECKED, TrainConfig
from glmocr_lf.config.rules import rule_problems
from glmocr_lf.runtime.errors import ConfigError, Problem, nearest

# A config is a few hundred values; aliases that expand past this are a bomb (`a: &a [x, x]`,
# `b: &b [*a, *a]`, ...: 30 levels are a billion values for whoever walks them)
MAX_YAML_VALUES = 100_000


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a float and refuses duplicate keys, as OmegaConf
    (LLaMA-Factory's reader) does, and refuses aliases that expand past MAX_YAML_VALUES."""

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node) > MAX_YAML_VALUES:
            raise _Refused(None, f"aliases expand to more than {MAX_YAML_VALUES:,} values; "
                                 "write the values out instead of nesting aliases")
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise _Refused(key_node.start_mark, f"duplicate key {key_node.value!r} (first on line "
                               f"{seen[key_node.value] + 1}); LLaMA-Factory's reader refuses it: keep one")
            seen[key_node.value] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with every alias expanded (each shared node is
    counted once per use, computed once). A node inside itself counts as too many."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes and sizes[id(node)] >= 0:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if sizes.get(id(node)) == -1:  # met again while its children are open: it contains itself
            return MAX_YAML_VALUES + 1
        sizes[id(node)] = -1
        stack.append((node, True))
        stack.extend((c, False) for c in children if sizes.get(id(c), -2) < 0)
    return sizes[id(root)]


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """The one reader of YAML text (config files, overrides): every refusal is a ConfigError."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _Refused as exc:
        where = f"line {exc.mark.line + 1}" if exc.mark else "YAML"
        raise ConfigError(source, [Problem(where, exc.message)]) from None
    except RecursionError:
        raise ConfigError(source, [Problem("YAML", "nested too deep to read")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(source, [Problem(where, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem("", f"YAML syntax error: {exc}")]) from None


def read_config_file(path: Path) -> dict[str, Any]:
    source = str(path)
    if path.is_dir():
        raise ConfigError(source, [Problem("", "is a directory, not a YAML file")])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [Problem("", f"not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot read: {exc.strerror}")]) from None
    data = parse_yaml(text, source)
    if data is None:
        raise ConfigError(source, [Problem("", "file is empty")])
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", f"must be a mapping of key: value, got a {type(data).__name__}")])
    return data


def known_keys(table: KeyTable | Unavailable) -> dict[str, str]:
    """key -> section of every key we can name: LLaMA-Factory's table (when installed) and ours."""
    return {**lfkeys.suggestion_pool(table), **KEY_SECTION}


def suggest(key: str, table: KeyTable | Unavailable | None = None,
            known: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The nearest known key and its section, e.g. `optm` -> (`optim`, `train`)."""
    pool = known if known is not None else known_keys(lfkeys.load_table() if table is None else table)
    match = nearest(key, pool)
    return (match, pool[match]) if match else None


def unknown_key_message(key: str, table: KeyTable | Unavailable | None = None) -> str:
    hint = suggest(key, table)
    if hint:
        return f"unknown key; did you mean '{hint[0]}' ({hint[1]} section)?"
    return "unknown key (run `glmocr-lf config schema` for the known keys)"


def key_problem(key: str, table: KeyTable | Unavailable) -> str | None:
    """None when `key` is ours or LLaMA-Factory's, or cannot be checked here (then it is a warning)."""
    if key in KEY_SECTION or isinstance(table, Unavailable) or key in table.keys:
        return None
    return unknown_key_message(key, table)


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "missing":
            msg = "required key is missing"
        # a union (`str | list`) reports one error per member: keep the path clean
        loc = [p for p in loc if not p.startswith(("list[", "literal["))]
        problems.append(Problem(".".join(loc), msg))
    # de-duplicate while keeping order (unions repeat themselves)
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            unique.append(p)
    return unique


def from_flat(data: dict[str, Any], source: str) -> TrainConfig:
    """Validate a flat mapping (the YAML's keys) into a TrainConfig, or raise ConfigError with all problems."""
    problems: list[Problem] = []
    nested: dict[str, Any] = {name: {} for name in SECTIONS}
    passthrough: dict[str, dict[str, Any]] = {}
    table = lfkeys.load_table() if any(str(k) not in KEY_SECTION for k in data) else None
    for key, value in data.items():
        key_s = str(key)
        section = KEY_SECTION.get(key_s)
        if section is not None:
            nested[section][key_s] = value
        elif isinstance(table, KeyTable) and key_s in table.keys:
            spec = table.keys[key_s]
            message = spec.check(value)
            if message:
                problems.append(Problem(f"{spec.section}.{key_s}", message))
            else:
                passthrough.setdefault(spec.section, {})[key_s] = value
        elif isinstance(table, Unavailable):  # warned about by check.config_warnings
            passthrough.setdefault(UNCHECKED, {})[key_s] = value
        else:
            problems.append(Problem(key_s, unknown_key_message(key_s, table)))
    nested["passthrough"] = passthrough
    invalid = {str(k) for k in data if str(k) not in KEY_SECTION and str(k) not in
               {key for values in passthrough.values() for key in values}}
    try:
        cfg: TrainConfig | None = TrainConfig.model_validate(nested)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
        invalid.update(str(err["loc"][1]) for err in exc.errors() if len(err["loc"]) > 1)
        cfg = _without(nested, invalid)
    if cfg is not None:  # the rules too, in the same pass: every problem at once
        problems.extend(rule_problems(cfg, invalid=invalid))
    if problems or cfg is None:
        raise ConfigError(source, problems)
    return cfg


def _without(nested: dict[str, Any], invalid: set[str]) -> TrainConfig | None:
    """The config without its refused values (a placeholder model when that one is refused), for
    checking the rules on the rest; None when even that does not validate."""
    kept: dict[str, Any] = {name: {k: v for k, v in values.items() if k not in invalid}
                            for name, values in nested.items() if name != "passthrough"}
    kept["model"].setdefault("model_name_or_path", "-")
    try:
        return TrainConfig.model_validate({**kept, "passthrough": nested["passthrough"]})
    except ValidationError:
        return None


def apply_changes(cfg: TrainConfig, changes: dict[str, Any], source: str) -> TrainConfig:
    """`cfg` with flat `key: value` changes applied; a value of None unsets the key."""
    merged = cfg.flat()
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return from_flat(merged, source)


def config_value(path: Path, key: str) -> str | None:
    """What the file sets `key` to, as one line: a string as written (a list of names joined with
    commas, as LLaMA-Factory reads `dataset`), any other value as JSON; None when unset. A key that
    is neither ours nor LLaMA-Factory's is an error (the key table is read only for such a key)."""
    data = read_config_file(path)
    problem = key_problem(key, lfkeys.load_table()) if key not in KEY_SECTION and key not in data else None
    if key not in data and problem:
        raise ConfigError(str(path), [Problem(key, problem)])
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    data = read_config_file(path)
    if overrides:
        data.update(overrides)
    return from_flat(data, str(path))


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` as LLaMA-Factory takes it after the YAML (the value is parsed as YAML)."""
    if "=" not in item:
        raise ConfigError("override", [Problem(item, "expected KEY=VALUE (LLaMA-Factory does not take --key value)")])
    key, _, raw = item.partition("=")
    key = key.strip()
    if key.startswith("-"):
        raise ConfigError("override", [Problem(key, "write overrides as key=value, without leading dashes")])
    problem = key_problem(key, lfkeys.load_table()) if key not in KEY_SECTION else None
    if problem:
        raise ConfigError("override", [Problem(key, problem)])
    value = parse_yaml(raw, f"override {key}") if raw.strip() else None
    return key, value


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return dict(parse_override(item) for item in items)

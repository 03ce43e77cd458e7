"""Read a flat LLaMA-Factory YAML into a TrainConfig, reporting every problem with its key path."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from glmocr_lf.config.models import KEY_SECTION, SECTIONS, TrainConfig
from glmocr_lf.config.rules import rule_problems
from glmocr_lf.errors import ConfigError, Problem


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a float, as OmegaConf (LLaMA-Factory's reader) does."""


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
    try:
        return yaml.load(text, Loader=_Loader)
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


def suggest(key: str) -> str | None:
    matches = difflib.get_close_matches(key, list(KEY_SECTION), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: str) -> str:
    hint = suggest(key)
    if hint:
        return f"unknown key; did you mean '{hint}'?"
    return "unknown key (run `glmocr-lf config schema` for the known keys)"


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
    nested: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in data.items():
        key_s = str(key)
        section = KEY_SECTION.get(key_s)
        if section is None:
            problems.append(Problem(key_s, unknown_key_message(key_s)))
            continue
        nested[section][key_s] = value
    try:
        cfg = TrainConfig.model_validate(nested)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
        raise ConfigError(source, problems) from None
    problems.extend(rule_problems(cfg))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def apply_changes(cfg: TrainConfig, changes: dict[str, Any], source: str) -> TrainConfig:
    """`cfg` with flat `key: value` changes applied; a value of None unsets the key."""
    merged = cfg.flat()
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return from_flat(merged, source)


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
    if key not in KEY_SECTION:
        raise ConfigError("override", [Problem(key, unknown_key_message(key))])
    value = parse_yaml(raw, f"override {key}") if raw.strip() else None
    return key, value


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return dict(parse_override(item) for item in items)

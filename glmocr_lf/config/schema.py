"""JSON Schema of the flat YAML file (what editors validate against): our typed sections, then every
other key of the installed LLaMA-Factory, from its own argument table."""

from __future__ import annotations

from typing import Any

from glmocr_lf.config import lfkeys
from glmocr_lf.config.models import SECTION_ORDER, SECTIONS


def lf_property(spec: lfkeys.KeySpec) -> dict[str, Any]:
    prop: dict[str, Any] = {}
    types = [*spec.types, *(["null"] if spec.nullable else [])]
    if spec.types:
        prop["type"] = types[0] if len(types) == 1 else types
    if spec.choices is not None:
        prop["enum"] = [*spec.choices, *([None] if spec.nullable else [])]
    prop["default"] = spec.default
    if spec.help:
        prop["description"] = spec.help
    prop["x-section"] = spec.section
    prop["x-llamafactory"] = spec.lf_class
    return prop


def flat_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    required: list[str] = []
    for section in SECTION_ORDER:
        schema = SECTIONS[section].model_json_schema()
        defs.update(schema.get("$defs", {}))
        for key, prop in schema["properties"].items():
            properties[key] = {**prop, "x-section": section}
        required.extend(schema.get("required", []))
    table = lfkeys.load_table()
    if isinstance(table, lfkeys.KeyTable):
        for name, spec in table.keys.items():
            properties.setdefault(name, lf_property(spec))
        title_versions = (f" (llamafactory {table.versions['llamafactory']}, "
                          f"transformers {table.versions['transformers']})")
    else:
        title_versions = f" (typed keys only: {table.reason})"
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "glmocr-lf training config (LLaMA-Factory YAML for GLM-OCR)" + title_versions,
        "type": "object",
        "properties": properties,
        "required": required,
        # without the table, keys we do not model may still be valid LLaMA-Factory keys
        "additionalProperties": not isinstance(table, lfkeys.KeyTable),
    }
    if defs:
        out["$defs"] = defs
    return out

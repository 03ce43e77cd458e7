"""JSON Schema of the flat YAML file (what editors validate against)."""

from __future__ import annotations

from typing import Any

from glmocr_lf.config.models import SECTION_ORDER, SECTIONS


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
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "glmocr-lf training config (LLaMA-Factory YAML for GLM-OCR)",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if defs:
        out["$defs"] = defs
    return out

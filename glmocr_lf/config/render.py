"""Write a TrainConfig as the YAML that the installed LLaMA-Factory and transformers accept; the
same writer renders export's config (export/config.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from glmocr_lf import __version__
from glmocr_lf.config import lfkeys
from glmocr_lf.config.models import SECTION_ORDER, SECTIONS, UNCHECKED, TrainConfig
from glmocr_lf.runtime.versions import Stack

HELP_WIDTH = 90  # a passed-through key's comment: LLaMA-Factory's help, cut to this many characters


@dataclass
class Rendered:
    """LLaMA-Factory's flat keys per section, plus what was changed to fit the installed versions."""

    sections: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def adapt(cfg: TrainConfig, stack: Stack) -> Rendered:
    """Apply the version rules: what we write must be accepted by the versions in `stack`."""
    sections = cfg.sectioned()
    notes: list[str] = []
    train = sections["train"]
    if "warmup_ratio" in train and stack.renders_warmup_as_steps():
        ratio = train.pop("warmup_ratio")
        if ratio is not None:
            train["warmup_steps"] = ratio
            notes.append(f"warmup_ratio: {ratio} written as warmup_steps: {ratio} (a value < 1 is a "
                         f"ratio); transformers {stack.get('transformers') or '(not installed)'} "
                         "has no warmup_ratio from 5.15 on")
    model = sections["model"]
    if stack.gradient_checkpointing_broken() and not model.get("disable_gradient_checkpointing"):
        model["disable_gradient_checkpointing"] = True
        notes.append(f"disable_gradient_checkpointing: true added: LLaMA-Factory's gradient "
                     f"checkpointing crashes with transformers {stack.get('transformers')} (>= 5.23)")
    return Rendered(sections, notes)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _description(section: str, key: str) -> str:
    """Our field's description, else the first sentence of LLaMA-Factory's own help for the key."""
    info = SECTIONS[section].model_fields.get(key) if section in SECTIONS else None
    if info is not None:
        return info.description or ""
    table = lfkeys.load_table()
    spec = table.keys.get(key) if isinstance(table, lfkeys.KeyTable) else None
    if spec is None:
        return ""
    sentence = spec.help.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= HELP_WIDTH else sentence[: HELP_WIDTH - 3].rstrip() + "..."


def to_yaml(rendered: Rendered, *, comments: bool = True, header: str | None = None,
            order: Sequence[str] = (*SECTION_ORDER, UNCHECKED)) -> str:
    """`### section` blocks in `order` (LLaMA-Factory's), one `key: value` a line."""
    lines: list[str] = []
    if header:
        lines.extend(f"# {line}" if line else "#" for line in header.splitlines())
        lines.append("")
    for section in order:
        values = rendered.sections.get(section) or {}
        if not values:
            continue
        lines.append(f"### {section}" if section != UNCHECKED else
                     f"### {section} (not checked: the training stack is not installed here)")
        width = max(len(f"{k}: {_scalar(v)}") for k, v in values.items())
        for key, value in values.items():
            entry = f"{key}: {_scalar(value)}"
            note = _description(section, key) if comments else ""
            lines.append(f"{entry.ljust(width)}  # {note}" if note else entry)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_config(cfg: TrainConfig, stack: Stack | None = None, *, comments: bool = True) -> tuple[str, list[str]]:
    """The YAML text and the notes about version adaptations."""
    stack = stack or Stack.detect()
    rendered = adapt(cfg, stack)
    header = None
    if comments:
        header = (f"GLM-OCR fine-tuning config, written by glmocr-lf {__version__} for "
                  f"llamafactory {stack.get('llamafactory') or '(any)'} / transformers "
                  f"{stack.get('transformers') or '(any)'}.\n"
                  "Check it with `glmocr-lf config validate FILE`; train with `glmocr-lf train FILE`.")
    return to_yaml(rendered, comments=comments, header=header), rendered.notes

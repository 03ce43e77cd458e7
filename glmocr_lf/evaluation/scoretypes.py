"""What scoring produces: the metrics, per-sample and per-task scores, and a sample's kind (shared
by our protocol in `score.py` and OmniDocBench's in `omnidocbench.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from glmocr_lf.evaluation import metrics as m
from glmocr_lf.evaluation.predictions import Prediction

SampleKind = Literal["text", "table", "formula", "json"]
BUILTIN_KINDS: dict[str, SampleKind] = {"text": "text", "table": "table", "formula": "formula"}


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("quality", True, "primary score in [0, 1]: teds, 1-latex_ned, json_f1 or 1-ned"),
    Metric("ned", False, "edit distance / max length (OmniDocBench)"),
    Metric("cer", False, "edit distance / reference length"),
    Metric("exact", True, "prediction equals reference"),
    Metric("teds", True, "table tree-edit-distance similarity, cell content included"),
    Metric("teds_s", True, "table structure similarity (TEDS-S)"),
    Metric("latex_ned", False, "edit distance on normalised LaTeX"),
    Metric("latex_exact", True, "normalised LaTeX equal"),
    Metric("json_valid", True, "prediction is valid JSON"),
    Metric("json_f1", True, "field-level F1 against the reference JSON"),
    Metric("repetition", False, "prediction ends in a loop the reference does not have"),
    # --protocol omnidocbench
    Metric("edit", False, "OmniDocBench: edit distance / max length after its normalisation, mean"),
    Metric("edit_total", False, "OmniDocBench: sum of edit distances / sum of max lengths"),
)
METRIC_BY_NAME = {metric.name: metric for metric in METRICS}


@dataclass(frozen=True)
class SampleScore:
    id: str
    task: str
    kind: SampleKind
    metrics: dict[str, float]

    @property
    def quality(self) -> float:
        return self.metrics["quality"]


@dataclass(frozen=True)
class TaskScore:
    task: str
    samples: int
    metrics: dict[str, float]  # in METRICS order, only those some sample has

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "samples": self.samples,
                "metrics": {name: round(value, 6) for name, value in self.metrics.items()}}


@dataclass(frozen=True)
class Scores:
    source: str
    tasks: list[TaskScore]  # overall last
    samples: list[SampleScore]

    def task(self, name: str) -> TaskScore | None:
        return next((t for t in self.tasks if t.task == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "tasks": [t.to_json() for t in self.tasks]}


def sample_kind(prediction: Prediction) -> SampleKind:
    """GLM-OCR's own prompts name the kind (a text sample whose reference reads `$a$ and $b$` is
    still text); a custom prompt is classified by what its reference looks like."""
    if prediction.task in BUILTIN_KINDS:
        return BUILTIN_KINDS[prediction.task]
    reference = prediction.reference
    if m.is_table(reference):
        return "table"
    if m.looks_like_latex(reference):
        return "formula"
    if m.is_json_answer(reference):
        return "json"
    return "text"

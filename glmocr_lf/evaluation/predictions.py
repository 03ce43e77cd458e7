"""Predictions files: ours (`id, task, prompt, reference, prediction`) and LLaMA-Factory's
`generated_predictions.jsonl` (`prompt, predict, label`), read unchanged and told apart per line."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from glmocr_lf.data import jsonl
from glmocr_lf.data.template import ASSISTANT, USER
from glmocr_lf.runtime.constants import TASK_PROMPTS
from glmocr_lf.runtime.errors import DataError

OUR_KEYS = ("reference", "prediction")
LF_KEYS = ("label", "predict")
# Task names for custom prompts are the prompt itself, cut to this length.
TASK_NAME_MAX = 40

_TASK_BY_PROMPT = {prompt: task for task, prompt in TASK_PROMPTS.items()}
# `<|user|>`, `<|image|>`, `[gMASK]`, `<sop>`...: GLM special tokens as LLaMA-Factory decodes them.
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>|\[[gs]?MASK\]|<sop>|<eop>")


@dataclass(frozen=True)
class Prediction:
    id: str
    task: str
    prompt: str
    reference: str
    prediction: str
    images: tuple[str, ...] = ()  # the sample's image files (absolute), for the HTML report


def task_prompt(prompt: str) -> str:
    """The instruction in a prompt: the last user turn without image placeholders or special tokens.

    Accepts a plain user text (`<image>Text Recognition:`) and a decoded LLaMA-Factory prompt
    (`[gMASK]<sop><|user|>\\n<|begin_of_image|><|image|>...<|end_of_image|>Text Recognition:<|assistant|>`).
    """
    text = prompt
    if USER in text:
        text = text.rsplit(USER, 1)[1]
    text = text.split(ASSISTANT, 1)[0]
    text = _SPECIAL_TOKEN.sub("", text.replace("<image>", ""))
    return text.strip()


def detect_task(prompt: str) -> str:
    """`text`, `table` or `formula` for GLM-OCR's own prompts; a custom prompt names its own task."""
    instruction = task_prompt(prompt)
    if instruction in _TASK_BY_PROMPT:
        return _TASK_BY_PROMPT[instruction]
    first_line = instruction.splitlines()[0].strip() if instruction else ""
    if not first_line:
        return "other"
    if len(first_line) > TASK_NAME_MAX:
        return first_line[:TASK_NAME_MAX - 3].rstrip() + "..."
    return first_line


def _parse_line(record: object, index: int, where: str, strip: bool) -> Prediction:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if all(key in record for key in OUR_KEYS):
        reference, prediction = record["reference"], record["prediction"]
        keys = OUR_KEYS
    elif all(key in record for key in LF_KEYS):
        # LLaMA-Factory's glm_ocr template puts "\n" before the answer; both sides carry it
        reference, prediction = record["label"], record["predict"]
        keys = LF_KEYS
    else:
        raise DataError(f"{where}: needs keys reference and prediction (or LLaMA-Factory's label "
                        f"and predict); found {', '.join(sorted(record)) or 'none'}")
    for key, value in zip(keys, (reference, prediction), strict=True):
        if not isinstance(value, str):
            raise DataError(f"{where}: {key} must be a string, got {type(value).__name__}")
    prompt = record.get("prompt", "")
    if not isinstance(prompt, str):
        raise DataError(f"{where}: prompt must be a string, got {type(prompt).__name__}")
    task = record.get("task")
    if task is not None and not (isinstance(task, str) and task):
        raise DataError(f"{where}: task must be a non-empty string")
    images = record.get("images") or []
    if not (isinstance(images, list) and all(isinstance(i, str) for i in images)):
        raise DataError(f"{where}: images must be a list of file paths")
    raw_id = record.get("id", index)
    if strip:
        reference, prediction = reference.strip(), prediction.strip()
    return Prediction(id=str(raw_id), task=task or detect_task(prompt), prompt=prompt,
                      reference=reference, prediction=prediction, images=tuple(images))


def read_predictions(path: Path, *, strip: bool = True, finished_only: bool = False) -> list[Prediction]:
    """Every prediction in a JSONL file; answers without surrounding whitespace, or as the file has
    them with `strip=False` (OmniDocBench compares the raw strings where both normalise to empty).
    `finished_only`: the lines a running or interrupted `eval run` finished (maybe none)."""
    path = Path(path)
    numbered = jsonl.read(path, "predictions file", complete_lines_only=finished_only)
    predictions = [_parse_line(record, index, f"{path}:{lineno}", strip)
                   for index, (lineno, record) in enumerate(numbered)]
    if not predictions and not finished_only:
        raise DataError(f"{path}: no predictions in the file")
    seen: set[str] = set()
    for prediction in predictions:
        if prediction.id in seen:
            raise DataError(f"{path}: id {prediction.id!r} appears more than once")
        seen.add(prediction.id)
    return predictions


def write_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    jsonl.write(path, (asdict(p) for p in predictions))

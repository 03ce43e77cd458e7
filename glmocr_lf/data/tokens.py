"""Token budget of one sample as LLaMA-Factory builds it with the `glm_ocr` template, counted
from the pieces data/template.py defines (special tokens count one each; text goes through the
counter). Truncation follows `SupervisedDatasetProcessor._encode_data_example` and `infer_seqlen`
(LLaMA-Factory 0.9.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from glmocr_lf.data.template import IMAGE_FRAME, LEAD, PREFIX
from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER
from glmocr_lf.runtime.errors import MissingDependencyError

TextCounter = Callable[[str], int]


def estimate_text_tokens(text: str) -> int:
    """A deliberately generous estimate (about 3 UTF-8 bytes a token) used without `--model`."""
    return math.ceil(len(text.encode("utf-8")) / 3) if text else 0


def tokenizer_counter(model: Path) -> TextCounter:
    """Exact counts with the model's tokenizer (imports transformers: only call when asked)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("transformers", "count tokens with --model") from None
    from glmocr_lf.runtime.errors import DataError

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model), trust_remote_code=False)
    except Exception as err:  # transformers raises OSError/ValueError/KeyError for bad dirs
        raise DataError(f"{model}: cannot load a tokenizer: {err}") from None

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    return count


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's `processor_utils.infer_seqlen`, verbatim."""
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


@dataclass(frozen=True)
class Turn:
    source: int
    target: int
    image_end: int  # tokens into `source` where the last image ends; 0 without images


@dataclass(frozen=True)
class Budget:
    total: int
    image: int
    answer_turns_cut: tuple[int, ...]  # turn indexes whose answer would be cut
    image_turns_cut: tuple[int, ...]  # turn indexes whose image tokens would be cut
    prompt_cut: bool


def _content_tokens(content: str, image_tokens: list[int], count: TextCounter, lead: str) -> tuple[int, int]:
    """Tokens of a user message body and where its last image ends; consumes `image_tokens`."""
    parts = content.split(IMAGE_PLACEHOLDER)
    total = 0
    image_end = 0
    for i, part in enumerate(parts):
        total += count(lead + part if i == 0 else part)
        if i < len(parts) - 1:
            total += image_tokens.pop(0) + len(IMAGE_FRAME)
            image_end = total
    return total, image_end


def build_turns(system: str | None, pairs: Sequence[tuple[str, str]], image_tokens: Sequence[int],
                count: TextCounter) -> list[Turn]:
    pending = list(image_tokens)
    turns = []
    for index, (prompt, answer) in enumerate(pairs):
        head = 0
        if index == 0:
            head += len(PREFIX)
            if system:
                head += 1 + count(LEAD + system)  # SYSTEM, then its text
        body, image_end = _content_tokens(prompt, pending, count, LEAD)
        source = head + 1 + body + 1  # USER ... ASSISTANT
        answer_tokens, _ = _content_tokens(answer, pending, count, LEAD)
        turns.append(Turn(source, answer_tokens, head + 1 + image_end if image_end else 0))
    return turns


def budget(turns: Sequence[Turn], image_total: int, cutoff_len: int | None) -> Budget:
    total = 1 + sum(t.source + t.target for t in turns)  # + eos
    answers: list[int] = []
    images: list[int] = []
    prompt_cut = False
    if cutoff_len is not None:
        length = 1
        for index, turn in enumerate(turns):
            if length >= cutoff_len:
                answers.append(index)
                if turn.image_end:
                    images.append(index)
                continue
            source, target = infer_seqlen(turn.source, turn.target, cutoff_len - length)
            if source < turn.image_end:
                images.append(index)
            elif source < turn.source:
                prompt_cut = True
            if target < turn.target:
                answers.append(index)
            length += source + target
    return Budget(total, image_total, tuple(answers), tuple(images), prompt_cut)

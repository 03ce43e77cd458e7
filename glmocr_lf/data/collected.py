"""What a `data convert` source reader returns, and the sample it writes (shared by every reader)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER, TASK_PROMPTS

Progress = Callable[[int, int], None]  # (done, total) rows or pages
Pair = tuple[str, dict[str, Any]]  # (image path as written in the sample, sample)


@dataclass
class Collected:
    """What one source reader found: samples in order, and every problem (with its row or region)."""

    samples: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    images_dir: Path | None = None  # where this run extracted images (kept when nothing else is written)

    def add(self, image: str, task: str, prompt: str | None, answer: str) -> None:
        """One sample with `task`'s prompt, or `prompt` when given (counted under it: the task
        column then chose nothing)."""
        self.samples.append(sharegpt(image, TASK_PROMPTS[task] if prompt is None else prompt, answer))
        key = task if prompt is None else f"prompt {prompt!r}"
        self.counts[key] = self.counts.get(key, 0) + 1


def images_dir(output: Path) -> Path:
    """Where extracted images (Parquet cells, layout crops) go: OUT_images/ beside OUT."""
    return output.with_name(f"{output.stem}_images")


def sharegpt(image: str, prompt: str, answer: str) -> Pair:
    return (image, {"messages": [{"role": "user", "content": f"{IMAGE_PLACEHOLDER}{prompt}"},
                                 {"role": "assistant", "content": answer}],
                    "images": [image]})

"""What a dataset check reports and the options it runs with (`validate.py` runs the check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from glmocr_lf.data.info import Layout
from glmocr_lf.data.samples import FileFormat, SampleFile
from glmocr_lf.runtime.constants import LF_DEFAULT_IMAGE_MAX_PIXELS, LF_DEFAULT_IMAGE_MIN_PIXELS
from glmocr_lf.runtime.errors import DataError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class SampleProblem:
    file: str
    index: int
    line: int | None
    field: str
    message: str
    severity: Severity = "error"

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = self.message if self.severity == "error" else f"warning: {self.message}"
        return f"{where}: sample {self.index}: {self.field}: {text}"

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "sample": self.index, "line": self.line,
                "field": self.field, "message": self.message, "text": self.render()}


@dataclass(frozen=True)
class CheckOptions:
    media_dir: Path | None = None  # default: the dataset file's folder (as LLaMA-Factory's dataset_dir)
    cutoff_len: int | None = None
    image_max_pixels: int = LF_DEFAULT_IMAGE_MAX_PIXELS
    image_min_pixels: int = LF_DEFAULT_IMAGE_MIN_PIXELS
    model: Path | None = None
    allow_outside: bool = False
    workers: int | None = None
    layout: Layout = field(default_factory=Layout)  # a registered entry's columns and tags


class TrainingBudget(Protocol):
    """What a training config says about the token budget (config.models.TrainConfig has it)."""

    @property
    def cutoff_len(self) -> int: ...
    @property
    def image_max_pixels(self) -> int: ...
    @property
    def image_min_pixels(self) -> int: ...


def check_options(*, media_dir: Path | None = None, cutoff_len: int | None = None,
                  image_max_pixels: int | None = None, image_min_pixels: int | None = None,
                  training: TrainingBudget | None = None, model: Path | None = None,
                  allow_outside: bool = False) -> CheckOptions:
    """Options from flags; a training config fills what the flags leave out, then LLaMA-Factory's
    defaults do (cutoff_len is only checked when a flag or a config gives it)."""
    defaults = CheckOptions()
    if training is not None:
        cfg = training
        cutoff_len = cutoff_len or cfg.cutoff_len
        image_max_pixels = image_max_pixels or cfg.image_max_pixels
        image_min_pixels = image_min_pixels or cfg.image_min_pixels
    return CheckOptions(media_dir=media_dir, cutoff_len=cutoff_len,
                        image_max_pixels=image_max_pixels or defaults.image_max_pixels,
                        image_min_pixels=image_min_pixels or defaults.image_min_pixels,
                        model=model, allow_outside=allow_outside)


@dataclass(frozen=True)
class SampleRecord:
    """What `stats` needs to know of one sample (only for samples without structural errors)."""

    index: int
    prompt: str
    image_sizes: tuple[tuple[int, int], ...]
    image_tokens: int | None  # None when an image could not be read
    tokens: int | None
    image_cut: bool
    answer_cut: bool


@dataclass
class ValidationReport:
    file: str
    format: FileFormat
    media_dir: str
    samples: int
    options: CheckOptions
    token_count: Literal["exact", "estimated"]
    problems: list[SampleProblem] = field(default_factory=list)
    records: list[SampleRecord] = field(default_factory=list)
    sample_file: SampleFile | None = field(default=None, repr=False)

    @property
    def errors(self) -> list[SampleProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[SampleProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> int:
        return self.samples - len({p.index for p in self.errors})

    def raise_for_errors(self, what: str, *, why: str = "", hint: str | None = None,
                         limit_to: int | None = None, max_lines: int = 20) -> None:
        """A DataError listing the first `max_lines` errors (of samples < `limit_to`), if any."""
        errors = [p for p in self.errors if limit_to is None or p.index < limit_to]
        if not errors:
            return
        lines = ["  " + p.render() for p in errors[:max_lines]]
        if len(errors) > max_lines:
            lines.append(f"  ... and {len(errors) - max_lines} more")
        raise DataError(f"{what}: {len(errors)} error(s){'; ' + why if why else ''}\n" + "\n".join(lines), hint=hint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "media_dir": self.media_dir,
            "samples": self.samples,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "cutoff_len": self.options.cutoff_len,
            "image_max_pixels": self.options.image_max_pixels,
            "image_min_pixels": self.options.image_min_pixels,
            "token_count": self.token_count,
            "problems": [p.to_dict() for p in self.problems],
        }

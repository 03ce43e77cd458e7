"""The settings that change an evaluation's answers or their scores, where each one came from, and
how two runs' settings differ. Two runs are compared only when every one of them is equal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.runtime.constants import (
    LF_DEFAULT_IMAGE_MAX_PIXELS,
    LF_DEFAULT_IMAGE_MIN_PIXELS,
    TEMPLATE,
)
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.records import Record, read_export_record, read_train_record

DECODING = "greedy"  # do_sample=False, num_beams=1
PROTOCOL = "ours"  # what `eval run` scores with, and what `eval compare` compares


@dataclass(frozen=True)
class ScoreSettings:
    """Everything besides the model that decides a run's scores (batch size and device do not)."""

    image_max_pixels: int
    image_min_pixels: int
    max_new_tokens: int
    repetition_penalty: float
    decoding: str
    template: str
    protocol: str
    samples: int
    dataset_sha256: str  # the samples' texts and image bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Resolution:
    max_pixels: int
    min_pixels: int
    source: str  # where they came from, said on screen and recorded


def _recorded_resolution(directory: Path) -> tuple[int | None, int | None, Record] | None:
    """The pixel limits train or export recorded for `directory` (a run, a checkpoint, a merge)."""
    for record in (read_export_record(directory), read_train_record(directory)):
        if record is not None and (record.image_max_pixels or record.image_min_pixels):
            return record.image_max_pixels, record.image_min_pixels, record
    return None


def resolve_resolution(model: str, adapter: Path | None, settings_from: Path | None,
                       max_pixels: int | None, min_pixels: int | None) -> Resolution:
    """Each limit from its flag, else the record of `settings_from` (the model this run is compared
    with), else the adapter's training record, else the model's export or training record, else
    LLaMA-Factory's default."""
    sources: list[tuple[str, tuple[int | None, int | None]]] = [
        ("--image-max-pixels / --image-min-pixels", (max_pixels, min_pixels))]
    if settings_from is not None:
        sources.append(_settings_from(settings_from))
    for directory in (adapter, Path(model)):
        found = _recorded_resolution(directory) if directory is not None and directory.is_dir() else None
        if found is not None:
            sources.append((str(found[2].path), (found[0], found[1])))
    sources.append(("LLaMA-Factory's default; no training record found",
                    (LF_DEFAULT_IMAGE_MAX_PIXELS, LF_DEFAULT_IMAGE_MIN_PIXELS)))
    max_source, max_value = _first(sources, 0)
    min_source, min_value = _first(sources, 1)
    return Resolution(max_value, min_value, " and ".join(dict.fromkeys([max_source, min_source])))


def _settings_from(directory: Path) -> tuple[str, tuple[int | None, int | None]]:
    found = _recorded_resolution(directory) if directory.is_dir() else None
    if found is None:
        what = "no such folder" if not directory.exists() else "no export or training record there"
        raise GlmocrLfError(f"--settings-from {directory}: {what}",
                            hint="pass the fine-tuned model (export writes its record) or its training run")
    return str(found[2].path), (found[0], found[1])


def _first(sources: list[tuple[str, tuple[int | None, int | None]]], index: int) -> tuple[str, int]:
    for name, values in sources:
        value = values[index]
        if value is not None:
            return name, value
    raise AssertionError("LLaMA-Factory's default is always last")


def score_settings(resolution: Resolution, max_new_tokens: int, repetition_penalty: float, samples: int,
                   dataset_sha256: str) -> ScoreSettings:
    return ScoreSettings(image_max_pixels=resolution.max_pixels, image_min_pixels=resolution.min_pixels,
                         max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                         decoding=DECODING, template=TEMPLATE, protocol=PROTOCOL, samples=samples,
                         dataset_sha256=dataset_sha256)


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """One line per setting that differs, in ScoreSettings' order: `image_max_pixels: A 589824, B 50176`."""
    keys = dict.fromkeys([*ScoreSettings.__dataclass_fields__, *a, *b])
    return [f"{key}: A {a.get(key, 'not recorded')}, B {b.get(key, 'not recorded')}"
            for key in keys if (key in a or key in b) and a.get(key) != b.get(key)]

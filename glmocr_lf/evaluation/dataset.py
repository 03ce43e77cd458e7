"""The samples an evaluation scores: a registered dataset or a ShareGPT file, checked by the data
validator before any model loads, and the fingerprint of their content (text and image bytes)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from glmocr_lf.data.info import Layout
from glmocr_lf.data.report import CheckOptions
from glmocr_lf.data.validate import resolve_source, validate_file
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.modelfiles import Hasher


@dataclass(frozen=True)
class EvalSample:
    id: str
    system: str | None
    user_text: str  # with `<image>` placeholders
    images: list[Path]
    reference: str


@dataclass(frozen=True)
class DatasetSource:
    file: Path
    media_dir: Path
    layout: Layout  # how the registered entry (or our default, for a file) names the keys


def resolve_dataset(dataset: str, data_dir: Path) -> DatasetSource:
    """A ShareGPT file given directly, or a name registered in `data_dir`/dataset_info.json."""
    path, options = resolve_source(dataset, data_dir, CheckOptions())
    return DatasetSource(path, options.media_dir or path.parent, options.layout)


def load_samples(source: DatasetSource, max_samples: int | None = None) -> list[EvalSample]:
    """Single-turn samples (optional system, one user turn, one answer) with resolved image paths,
    checked by the data validator (structure, every image readable) before any model loads."""
    options = CheckOptions(media_dir=source.media_dir, allow_outside=True, layout=source.layout)
    report = validate_file(source.file, options)
    report.raise_for_errors(f"{source.file}", limit_to=max_samples,
                            hint=f"glmocr-lf data validate {shlex.quote(str(source.file))}")
    assert report.sample_file is not None
    records = report.sample_file.samples
    if max_samples is not None:
        records = records[:max_samples]  # LLaMA-Factory's max_samples: the first N
    samples = []
    for raw in records:
        messages = raw.data["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system is not None else messages
        if len(turns) != 2:
            raise DataError(f"{source.file}: sample {raw.index}: eval needs one user turn and one "
                            f"assistant answer, found {len(turns)} messages")
        images = [Path(os.path.join(source.media_dir, image)) for image in raw.data.get("images") or []]
        samples.append(EvalSample(str(raw.data.get("id", raw.index)), system, turns[0]["content"], images,
                                  turns[1]["content"]))
    return samples


def dataset_fingerprint(samples: Sequence[EvalSample], hasher: Hasher | None = None) -> str:
    """sha256 of what is scored: every sample's id, texts and image bytes, in order (not where the
    files lie, so a moved copy of the same data has the same fingerprint)."""
    hasher = hasher or Hasher()
    content = [[s.id, s.system, s.user_text, s.reference, [hasher.sha256(p) for p in s.images]] for s in samples]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()

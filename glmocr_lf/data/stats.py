"""`data stats`: what a dataset looks like to LLaMA-Factory: tasks, image sizes, token budget."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from glmocr_lf.data.report import CheckOptions
from glmocr_lf.data.validate import Progress, resolve_source, validate_file
from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER, LF_DEFAULT_CUTOFF_LEN

DEFAULT_CUTOFF_LEN = LF_DEFAULT_CUTOFF_LEN


@dataclass(frozen=True)
class Spread:
    p50: int
    p95: int
    max: int


@dataclass(frozen=True)
class DatasetStats:
    file: str
    samples: int
    errors: int
    prompts: dict[str, int]
    images: int
    width: Spread | None
    height: Spread | None
    image_max_pixels: int
    downsized: int  # images LLaMA-Factory shrinks to image_max_pixels
    median_downscale: float | None  # linear factor among the downsized (0.5 = half the width)
    tokens: Spread | None
    image_tokens: Spread | None
    token_count: str
    cutoff_len: int
    image_cut: int  # samples whose image tokens would be cut (training crashes)
    answer_cut: int  # samples whose answer would be cut

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(values: list[int]) -> Spread | None:
    if not values:
        return None
    ordered = sorted(values)

    def pick(q: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return Spread(pick(0.5), pick(0.95), ordered[-1])


def dataset_stats(source: str, data_dir: Path, options: CheckOptions | None = None, *,
                  progress: Progress | None = None) -> DatasetStats:
    """SOURCE is a dataset file, or a name registered in DATA/dataset_info.json."""
    path, options = resolve_source(source, data_dir, options or CheckOptions())
    if options.cutoff_len is None:
        options = replace(options, cutoff_len=DEFAULT_CUTOFF_LEN)
    report = validate_file(path, options, progress=progress, collect_records=True)
    records = report.records
    sizes = [size for r in records for size in r.image_sizes]
    limit = options.image_max_pixels
    shrink = sorted(math.sqrt(limit / (w * h)) for w, h in sizes if w * h > limit)
    prompts = Counter(r.prompt.replace(IMAGE_PLACEHOLDER, "").strip() for r in records)
    return DatasetStats(
        file=str(path), samples=report.samples, errors=len(report.errors),
        prompts=dict(prompts.most_common()), images=len(sizes),
        width=spread([w for w, _ in sizes]), height=spread([h for _, h in sizes]),
        image_max_pixels=limit, downsized=len(shrink),
        median_downscale=round(shrink[len(shrink) // 2], 3) if shrink else None,
        tokens=spread([r.tokens for r in records if r.tokens is not None]),
        image_tokens=spread([r.image_tokens for r in records if r.image_tokens is not None]),
        token_count=report.token_count, cutoff_len=options.cutoff_len or DEFAULT_CUTOFF_LEN,
        image_cut=sum(r.image_cut for r in records), answer_cut=sum(r.answer_cut for r in records))

"""Check the datasets a training config names, before any model is loaded."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.data.info import RemoteDatasetError, local_file
from glmocr_lf.runtime.constants import DATA_DIR, DATASET_INFO
from glmocr_lf.runtime.errors import DataError


def dataset_names(cfg: TrainConfig) -> list[str]:
    names: list[str] = []
    for value in (cfg.dataset.dataset, cfg.dataset.eval_dataset):
        if value:
            names.extend(n.strip() for n in value.split(",") if n.strip())
    return names


def packing_drop_note(cfg: TrainConfig, dataset: str, tokens: Iterable[int | None]) -> str | None:
    """The data check's count of samples that packing drops (LLaMA-Factory: 'Dropped lengthy
    example'); token counts are the check's estimate, image tokens included."""
    if not cfg.packing:
        return None
    dropped = sum(1 for t in tokens if t is not None and t > cfg.cutoff_len - 1)
    if not dropped:
        return None
    return (f"dataset {dataset}: packing will drop {dropped} sample(s) longer than "
            f"{cfg.cutoff_len - 1} tokens (cutoff_len - 1) instead of truncating them; raise "
            "cutoff_len to keep them")


@dataclass
class DataCheck:
    notes: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # the longest sample, image tokens included (for fitting the card)
    # samples the training datasets give (max_samples applied); None when one is not a local file
    train_samples: int | None = None


def check_datasets(cfg: TrainConfig) -> DataCheck:
    """Validate every named dataset with the token budget; raise DataError on errors."""
    from glmocr_lf.data.report import CheckOptions
    from glmocr_lf.data.validate import validate_file

    result = DataCheck()
    names = dataset_names(cfg)
    if not names:
        return result
    given = cfg.dataset.dataset_dir or DATA_DIR
    dataset_dir = Path(given).expanduser().resolve()
    info_path = dataset_dir / DATASET_INFO
    if not info_path.is_file():
        where = "" if Path(given).expanduser().is_absolute() else (
            f" (dataset_dir {given!r} resolves against the working directory {Path.cwd()}, as "
            "LLaMA-Factory resolves it; run glmocr-lf from the project root)")
        raise DataError(f"{info_path}: not found{where}",
                        hint="register a dataset with `glmocr-lf data register NAME FILE --data-dir DIR`")
    media_dir = Path(cfg.dataset.media_dir).expanduser().resolve() if cfg.dataset.media_dir else dataset_dir
    training = {n.strip() for n in (cfg.dataset.dataset or "").split(",") if n.strip()}
    counts: dict[str, int | None] = {name: None for name in training}
    for name in names:
        try:
            path, layout = local_file(dataset_dir, name)
        except RemoteDatasetError as remote:
            result.notes.append(f"{remote.message}, not checked")
            continue
        options = CheckOptions(media_dir=media_dir, cutoff_len=cfg.cutoff_len,
                               image_max_pixels=cfg.image_max_pixels, image_min_pixels=cfg.image_min_pixels,
                               allow_outside=True,  # staging links images to where they live
                               layout=layout)
        report = validate_file(path, options, collect_records=True)
        report.raise_for_errors(f"dataset {name}", why="training would fail or silently drop samples",
                                hint=f"glmocr-lf data validate {shlex.quote(str(path))} --cutoff-len {cfg.cutoff_len}")
        if name in counts:
            counts[name] = min(report.samples, cfg.dataset.max_samples or report.samples)
        result.notes.append(f"dataset {name}: {report.samples} samples OK"
                            + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
        dropped = packing_drop_note(cfg, name, (r.tokens for r in report.records))  # issue 11
        if dropped:
            result.notes.append(dropped)
        longest = max((r.tokens for r in report.records if r.tokens is not None), default=None)
        if longest is not None:
            result.max_tokens = max(result.max_tokens or 0, longest)
    known = [n for n in counts.values() if n is not None]
    result.train_samples = sum(known) if counts and len(known) == len(counts) else None
    return result

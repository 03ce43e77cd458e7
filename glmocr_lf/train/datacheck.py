"""Check the datasets a training config names, before any model is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.config.lfrules import packing_drop_note
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.constants import DATASET_INFO
from glmocr_lf.errors import DataError

MAX_LINES = 20


def dataset_names(cfg: TrainConfig) -> list[str]:
    names: list[str] = []
    for value in (cfg.dataset.dataset, cfg.dataset.eval_dataset):
        if value:
            names.extend(n.strip() for n in value.split(",") if n.strip())
    return names


@dataclass
class DataCheck:
    notes: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # the longest sample, image tokens included (for fitting the card)


def check_datasets(cfg: TrainConfig) -> DataCheck:
    """Validate every named dataset with the token budget; raise DataError on errors."""
    from glmocr_lf.data.validate import CheckOptions, validate_file

    result = DataCheck()
    names = dataset_names(cfg)
    if not names:
        return result
    dataset_dir = Path(cfg.dataset.dataset_dir or "data")
    info_path = dataset_dir / DATASET_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{info_path}: not found; register a dataset with "
                        "`glmocr-lf data register NAME FILE --data-dir DIR`") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{info_path}: unreadable ({exc})") from None
    media_dir = Path(cfg.dataset.media_dir) if cfg.dataset.media_dir else dataset_dir
    for name in names:
        entry = info.get(name)
        if not isinstance(entry, dict):
            raise DataError(f"dataset {name!r} is not registered in {info_path}",
                            hint=f"glmocr-lf data register {name} FILE --data-dir {dataset_dir}")
        if "file_name" not in entry:
            result.notes.append(f"dataset {name}: not a local file, not checked")
            continue
        path = dataset_dir / entry["file_name"]
        options = CheckOptions(media_dir=media_dir, cutoff_len=cfg.cutoff_len,
                               image_max_pixels=cfg.image_max_pixels, image_min_pixels=cfg.image_min_pixels,
                               allow_outside=True)  # staging links images to where they live
        report = validate_file(path, options, collect_records=True)
        if report.errors:
            lines = ["  " + p.render() for p in report.errors[:MAX_LINES]]
            more = len(report.errors) - MAX_LINES
            if more > 0:
                lines.append(f"  ... and {more} more")
            raise DataError(f"dataset {name}: {len(report.errors)} error(s); training would fail or "
                            "silently drop samples\n" + "\n".join(lines),
                            hint=f"glmocr-lf data validate {path} --cutoff-len {cfg.cutoff_len}")
        result.notes.append(f"dataset {name}: {report.samples} samples OK"
                            + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
        dropped = packing_drop_note(cfg, name, (r.tokens for r in report.records))  # issue 11
        if dropped:
            result.notes.append(dropped)
        longest = max((r.tokens for r in report.records if r.tokens is not None), default=None)
        if longest is not None:
            result.max_tokens = max(result.max_tokens or 0, longest)
    return result

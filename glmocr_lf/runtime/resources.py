"""Files shipped with glmocr-lf: inside the wheel under glmocr_lf/, or at the repository root in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # glmocr_lf/
_REPO = _PACKAGE.parent


def _locate(name: str) -> Path:
    for candidate in (_PACKAGE / name, _REPO / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"glmocr-lf resource {name!r} is missing from this installation")


def templates_dir() -> Path:
    return _locate("templates")


def sample_dataset() -> tuple[Path, Path]:
    """The bundled 10-image sample (GLM-OCR fine-tuning example, Apache-2.0): JSON file, image folder."""
    examples = _locate("examples")
    return examples / "cosyn_chemical.json", examples / "cosyn_chemical"


def deepspeed_config(stage: str) -> Path:
    return _PACKAGE / "deepspeed" / f"ds_{stage}_config.json"

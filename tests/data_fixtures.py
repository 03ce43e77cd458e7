"""Helpers for the data tests: tiny real images and ShareGPT files written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import invoke  # noqa: F401  (one CLI runner for every test)


def make_png(path: Path, width: int = 64, height: int = 32, color: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (color % 256, 0, 0)).save(path, format="PNG")
    return path


def make_jpeg(path: Path, width: int = 64, height: int = 32) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 20, 30)).save(path, format="JPEG")
    return path


def sample(image: str | None = "images/a.png", prompt: str = "Text Recognition:",
           answer: str = "hello", **extra: Any) -> dict[str, Any]:
    user = f"<image>{prompt}" if image else prompt
    data: dict[str, Any] = {"messages": [{"role": "user", "content": user},
                                         {"role": "assistant", "content": answer}]}
    data["images"] = [image] if image else []
    data.update(extra)
    return data


def write_json(path: Path, samples: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(samples, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, samples: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    return path


def good_dataset(root: Path, count: int = 3, name: str = "ds.json") -> Path:
    """`count` valid samples, each with its own image under root/images/."""
    samples = []
    for i in range(count):
        make_png(root / "images" / f"{i}.png", 40 + i, 30, color=i)
        samples.append(sample(f"images/{i}.png", answer=f"text {i}"))
    return write_json(root / name, samples)

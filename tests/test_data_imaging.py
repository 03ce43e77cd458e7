"""imaging.py against the real code it mirrors: LLaMA-Factory's GLM4V plugin resize and
transformers' Glm46VImageProcessor (skipped where the training stack is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import invoke, make_png, sample, write_json

from glmocr_lf.data.resize import ImageSizeError, image_tokens, lf_preprocess_size, smart_resize

SIZES = [
    (1, 1), (10, 10), (27, 500), (28, 28), (29, 27), (100, 37), (224, 224), (767, 769), (768, 768),
    (769, 769), (1000, 1), (1, 1000), (5000, 20), (20, 5000), (3000, 4000), (2480, 3508),
    (10000, 10000), (65000, 300), (7, 6000), (30000, 3), (1, 120000), (4096, 16), (123, 4567),
    (1920, 1080), (1080, 1920), (640, 480), (50, 50000), (200000, 1000),
]
BUDGETS = [(768 * 768, 32 * 32), (1024 * 1024, 32 * 32), (2048 * 2048, 256 * 256), (256 * 256, 16 * 16)]


class FakeImage:
    """Stands in for a PIL image in LLaMA-Factory's resize (only sizes matter; no pixels)."""

    mode = "RGB"

    def __init__(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("height and width must be > 0")  # what PIL says
        self.width, self.height = width, height

    def resize(self, size: tuple[int, int]) -> FakeImage:
        return FakeImage(*size)

    def convert(self, mode: str) -> FakeImage:
        return self


@pytest.fixture(scope="module")
def lf_plugin():  # type: ignore[no-untyped-def]
    mm_plugin = pytest.importorskip("llamafactory.data.mm_plugin")
    return mm_plugin.get_mm_plugin("glm4v", image_token="<|image|>", video_token="<|video|>")


@pytest.mark.parametrize(("max_pixels", "min_pixels"), BUDGETS)
def test_lf_preprocess_size_matches_llamafactory(lf_plugin, max_pixels: int, min_pixels: int) -> None:  # type: ignore[no-untyped-def]
    for width, height in SIZES:
        try:
            real = lf_plugin._preprocess_image(FakeImage(width, height), image_max_pixels=max_pixels,
                                               image_min_pixels=min_pixels)
        except (ValueError, ZeroDivisionError):
            with pytest.raises(ValueError):
                lf_preprocess_size(width, height, max_pixels, min_pixels)
            continue
        assert lf_preprocess_size(width, height, max_pixels, min_pixels) == (real.width, real.height), (width, height)


def test_smart_resize_matches_transformers() -> None:
    glm46v = pytest.importorskip("transformers.models.glm46v.image_processing_glm46v")
    for width in [28, 29, 55, 56, 100, 333, 768, 1000, 2000, 5040, 4000]:
        for height in [28, 41, 84, 500, 768, 999, 3000]:
            if max(width, height) / min(width, height) > 200:
                continue
            assert smart_resize(height, width) == glm46v.smart_resize(
                2, height, width, temporal_factor=2, factor=28, min_pixels=112 * 112,
                max_pixels=28 * 28 * 15000), (width, height)


def test_image_tokens_match_the_real_processor(lf_plugin) -> None:  # type: ignore[no-untyped-def]
    glm46v = pytest.importorskip("transformers.models.glm46v.image_processing_glm46v")
    from PIL import Image

    processor = glm46v.Glm46VImageProcessor()
    for max_pixels, min_pixels in BUDGETS[:2]:
        for width, height in SIZES:
            try:
                image = lf_plugin._preprocess_image(FakeImage(width, height), image_max_pixels=max_pixels,
                                                    image_min_pixels=min_pixels)
            except (ValueError, ZeroDivisionError):
                continue
            pixels = Image.new("RGB", (image.width, image.height))
            grid = processor([pixels], return_tensors="pt")["image_grid_thw"][0]
            real = int(grid.prod()) // processor.merge_size**2
            assert image_tokens(width, height, max_pixels, min_pixels) == real, (width, height, max_pixels)


def test_a_size_llamafactory_cannot_resize_is_an_image_size_error() -> None:
    with pytest.raises(ImageSizeError, match="leaves 768000x0 pixels"):
        lf_preprocess_size(1_000_000, 1, 768 * 768, 32 * 32)


def _one_image_dataset(root: Path, width: int, height: int) -> Path:
    make_png(root / "images" / "strip.png", width, height)
    return write_json(root / "ds.json", [sample("images/strip.png")])


@pytest.mark.parametrize("args", [["data", "validate", "ds.json", "--cutoff-len", "2048"],
                                  ["data", "validate", "ds.json"]])
def test_an_image_training_would_crash_on_is_a_per_image_error(tmp_path: Path, args: list[str]) -> None:
    """1 x 1,000,000 pixels: downscaled to image_max_pixels it is 0 pixels wide (main ended in a
    ValueError traceback from resize.lf_preprocess_size, or said nothing without --cutoff-len)."""
    _one_image_dataset(tmp_path, 1, 1_000_000)
    result = invoke(*args)
    assert result.exit_code == 1
    assert ("ds.json: sample 0: images[0]: 1x1000000 pixels: downscaling it to image_max_pixels 589824 "
            "leaves 0x768000 pixels, which LLaMA-Factory's resize fails on; crop or split the image") in result.stderr


def test_stats_count_it_as_an_error(tmp_path: Path) -> None:
    _one_image_dataset(tmp_path, 1, 1_000_000)
    result = invoke("data", "stats", "ds.json")  # main: ValueError traceback
    assert result.exit_code == 0, result.stderr
    assert "samples: 1 (1 errors)" in result.stdout.splitlines()


def test_the_train_data_check_names_the_image(tmp_path: Path) -> None:
    from glmocr_lf.config.presets import preset
    from glmocr_lf.runtime.errors import DataError
    from glmocr_lf.train.datacheck import check_datasets

    _one_image_dataset(tmp_path / "data", 1, 1_000_000)
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"strip": {
        "file_name": "ds.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    with pytest.raises(DataError) as refused:
        check_datasets(preset("lora", dataset="strip", overrides={"dataset_dir": str(tmp_path / "data")}))
    assert "images[0]: 1x1000000 pixels: downscaling it to image_max_pixels" in str(refused.value.message)


def test_an_aspect_ratio_the_processor_refuses_is_a_warning(tmp_path: Path) -> None:
    """1 x 100,000 pixels: GLM-OCR's processor refuses an aspect ratio over 200, but LLaMA-Factory
    squeezes the image to 28 x 5040 before it (checked against both in
    test_image_tokens_match_the_real_processor): it trains, distorted. Main reported it OK."""
    _one_image_dataset(tmp_path, 1, 100_000)
    result = invoke("data", "validate", "ds.json")
    assert result.exit_code == 0, result.stderr
    assert ("ds.json: sample 0: images[0]: warning: 1x100000 pixels: aspect ratio over 200:1, which GLM-OCR's "
            "processor refuses; LLaMA-Factory squeezes it to 28x5040 first, distorting its text: crop or split "
            "the image") in result.stderr

"""`glmocr-lf data stats`: prompts, image sizes, token spread against cutoff_len, by FILE or NAME."""

from __future__ import annotations

import json
from pathlib import Path

from data_fixtures import good_dataset, invoke, make_png, sample, write_json
from helpers import SAMPLE_JSON


def test_stats_of_a_file(tmp_path: Path) -> None:
    make_png(tmp_path / "images" / "big.png", 2000, 1000)
    make_png(tmp_path / "images" / "a.png")
    write_json(tmp_path / "ds.json", [sample("images/big.png", prompt="Table Recognition:"), sample(), sample()])
    result = invoke("data", "stats", "ds.json", "--cutoff-len", "600", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["prompts"] == {"Text Recognition:": 2, "Table Recognition:": 1}
    assert (stats["images"], stats["downsized"], stats["median_downscale"]) == (3, 1, 0.543)
    assert stats["width"] == {"p50": 64, "p95": 2000, "max": 2000}
    assert (stats["cutoff_len"], stats["image_cut"], stats["answer_cut"]) == (600, 1, 0)
    assert stats["image_tokens"]["max"] == 2 + 741  # 1086x543 after LLaMA-Factory, 1092x532 after the processor


def test_stats_text_of_registered_name(tmp_path: Path) -> None:
    (tmp_path / "cosyn").mkdir()  # a folder named like the dataset does not shadow the name
    result = invoke("data", "register", "cosyn", SAMPLE_JSON)
    assert result.exit_code == 0
    result = invoke("data", "stats", "cosyn")
    assert result.exit_code == 0
    out = result.stdout.splitlines()
    assert out[:4] == ["file: data/cosyn.json", "samples: 10 (0 errors)", "prompts:", "        10  'Code Generation:'"]
    assert out[-1] == ("cutoff_len 2048: 0 samples would lose image tokens (training crashes), "
                       "0 would have the answer cut")


def test_stats_unknown_name(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    invoke("data", "register", "mine", "src/ds.json")
    result = invoke("data", "stats", "mien")
    assert (result.exit_code, result.stderr) == (
        1, "Error: dataset 'mien' is not registered in data/dataset_info.json\nHint: did you mean 'mine'?\n")

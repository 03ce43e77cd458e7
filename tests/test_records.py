"""Run records (runtime/records.py): the one reader and writer of glmocr_lf_run.json,
glmocr_lf_export.json and eval_run.json, and export and eval reading what train recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmocr_lf import __version__
from glmocr_lf.cli import cli
from glmocr_lf.runtime import records
from glmocr_lf.runtime.errors import GlmocrLfError


def test_train_record_round_trip_stamps_who_wrote_it(tmp_path: Path) -> None:
    written = records.write_train_record(tmp_path, records.TrainRecord(
        status="running", model_name_or_path="zai-org/GLM-OCR", image_max_pixels=262144, argv=["a", "b"]))
    assert written == tmp_path / "glmocr_lf_run.json"
    data = json.loads(written.read_text())
    assert (data["status"], data["glmocr_lf"], data["argv"]) == ("running", __version__, ["a", "b"])
    assert set(data["versions"]) >= {"llamafactory", "transformers", "torch"}
    record = records.read_train_record(tmp_path)
    assert record is not None and record.path == written
    assert (record.status, record.image_max_pixels, record.model_name_or_path) == (
        "running", 262144, "zai-org/GLM-OCR")
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_a_checkpoint_reads_its_runs_record(tmp_path: Path) -> None:
    records.write_train_record(tmp_path, records.TrainRecord(image_max_pixels=1000))
    (tmp_path / "checkpoint-20").mkdir()
    found = records.read_train_record(tmp_path / "checkpoint-20")
    assert found is not None and found.path == tmp_path / "glmocr_lf_run.json"
    (tmp_path / "other").mkdir()
    assert records.read_train_record(tmp_path / "other") is None  # only checkpoint-N looks one up


def test_a_record_of_another_version_reads_and_a_broken_one_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "glmocr_lf_export.json").write_text('{"image_max_pixels": 802816, "from_the_future": 1}')
    record = records.read_export_record(tmp_path)
    assert record is not None and (record.image_max_pixels, record.adapter) == (802816, None)
    (tmp_path / "eval_run.json").write_text('{"status": "running", "samples": "many"}')
    with pytest.raises(GlmocrLfError) as bad:
        records.read_eval_record(tmp_path)
    assert bad.value.message.startswith(f"{tmp_path / 'eval_run.json'}: not a glmocr-lf record: samples: ")
    (tmp_path / "eval_run.json").write_text('{"status": "runn')  # cut off
    with pytest.raises(GlmocrLfError, match="not a glmocr-lf record"):
        records.read_eval_record(tmp_path)


def test_export_takes_base_and_resolution_from_the_train_record(tmp_path: Path) -> None:
    """No YAML beside the run: the record is what export reads (main re-parsed glmocr_lf_train.yaml)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "zai-org/GLM-OCR"}))
    records.write_train_record(run, records.TrainRecord(model_name_or_path="/models/glm-ocr",
                                                        image_max_pixels=1000000, image_min_pixels=4096))
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "adapter_config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["export", "--adapter", str(run / "checkpoint-5"), "--dry-run"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "model_name_or_path: /models/glm-ocr" in lines
    assert {"image_max_pixels: 1000000", "image_min_pixels: 4096"} <= set(lines)

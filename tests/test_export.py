"""Export planning and the processor-resolution record (no llamafactory-cli needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmocr_lf import __version__
from glmocr_lf.cli import cli
from glmocr_lf.export.merge import record_resolution


def test_processor_capped_at_training_resolution(tmp_path: Path) -> None:
    config = {"image_processor": {"size": {"shortest_edge": 12544, "longest_edge": 11760000}}, "video_processor": {}}
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"longest_edge": 11760000}}))
    record_resolution(tmp_path, 589824)
    # Glm46V's smart_resize counts two temporal frames: 2 x image_max_pixels gives LLaMA-Factory's grid
    assert json.loads((tmp_path / "processor_config.json").read_text())["image_processor"]["size"] == {
        "shortest_edge": 12544, "longest_edge": 1179648}
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["size"]["longest_edge"] == 1179648


def test_export_yaml_has_no_training_keys(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "zai-org/GLM-OCR"}))
    (run / "glmocr_lf_run.json").write_text('{"model_name_or_path": "/models/glm-ocr", "image_max_pixels": 1000000}')
    result = CliRunner().invoke(cli, ["export", "--adapter", str(run), "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # llamafactory-cli writes into a hidden sibling, which replaces merged/ once complete
    assert lines[0].endswith(f"llamafactory-cli export {run / '.merged.export' / 'glmocr_lf_export.yaml'}")
    # the train config's writer, in LLaMA-Factory's `### section` order (main wrote json.dumps lines)
    assert lines[1:] == [
        f"# Written by glmocr-lf {__version__}: llamafactory-cli export reads this file.",
        "",
        "### model",
        "model_name_or_path: /models/glm-ocr",
        f"adapter_name_or_path: {run}",
        "template: glm_ocr",
        "trust_remote_code: true",
        "image_max_pixels: 1000000",
        "image_min_pixels: 1024",
        "",
        "### method",
        "finetuning_type: lora",
        "",
        "### export",
        f"export_dir: {run / '.merged.export'}",
        "export_size: 5",
        "export_device: cpu",
        "export_legacy_format: false",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "Error: give exactly one of --adapter (a LoRA run) or --model (a full fine-tune)"),
        (["--adapter", "a", "--model", "b"], 2,
         "Error: give exactly one of --adapter (a LoRA run) or --model (a full fine-tune)"),
        (["--adapter", "nowhere"], 1, "Error: {tmp}/nowhere: no such directory"),
    ],
)
def test_export_refusals(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == code
    assert message.format(tmp=tmp_path) in result.stderr.splitlines()


def test_lora_run_given_as_model_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "my run").mkdir()
    (tmp_path / "my run" / "adapter_config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["export", "--model", "my run"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Hint: this is a LoRA adapter: glmocr-lf export --adapter '{tmp_path}/my run'"


@pytest.mark.parametrize("status", ["interrupted", "failed"])
def test_a_run_that_stopped_is_not_exported_as_its_result(tmp_path: Path, status: str) -> None:
    """`train --fresh` then Ctrl-C: the adapter in output_dir (if any) is not this run's."""
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "adapter_config.json").write_text("{}")
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "zai-org/GLM-OCR"}))
    (run / "glmocr_lf_run.json").write_text(json.dumps({"status": status, "model_name_or_path": "zai-org/GLM-OCR"}))
    result = CliRunner().invoke(cli, ["export", "--adapter", str(run), "--dry-run"])
    assert result.exit_code == 1
    said = "was interrupted" if status == "interrupted" else "failed"
    assert result.stderr.splitlines() == [
        f"Error: {run}: the training run recorded there {said} (glmocr_lf_run.json: status {status}); its "
        "weights may be an earlier run's",
        f"Hint: export a checkpoint explicitly: glmocr-lf export --adapter {run / 'checkpoint-2'}, or finish it "
        "with glmocr-lf train CONFIG --resume"]
    checkpoint = CliRunner().invoke(cli, ["export", "--adapter", str(run / "checkpoint-2"), "--dry-run"])
    assert checkpoint.exit_code == 0, checkpoint.stderr


def test_full_run_given_as_adapter_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["export", "--adapter", "full"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {tmp_path}/full: no adapter_config.json, not a LoRA adapter",
                                          "Hint: this looks like a full fine-tune: use --model"]

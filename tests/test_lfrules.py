"""The rule table's rules for the LLaMA-Factory keys beyond our typed sections, and tracker defaults."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import H100, fake_host, needs_stack, put_in_hf_cache, use_host

from glmocr_lf.cli import cli
from glmocr_lf.config import from_flat
from glmocr_lf.runtime.versions import Stack
from glmocr_lf.train.datacheck import packing_drop_note
from glmocr_lf.train.plan import LaunchRequest, prepare
from glmocr_lf.train.tracking import summary_rows, tracking_defaults

pytestmark = needs_stack
MINIMAL = "model_name_or_path: zai-org/GLM-OCR\ntemplate: glm_ocr\n"
PACKING_WARNING = ("Warning: c.yaml: dataset.packing: packing drops every sample longer than cutoff_len - 1 "
                   "(2047 tokens) instead of truncating it; `glmocr-lf train` counts them in the data "
                   "check (`glmocr-lf data stats NAME` shows the token lengths)")


@pytest.fixture(autouse=True)
def _one_h100_and_everything_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, fake_host((H100,), importable_all=True))
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})


def validate(runner: CliRunner, text: str) -> tuple[int, list[str]]:
    Path("c.yaml").write_text(MINIMAL + text, encoding="utf-8")
    result = runner.invoke(cli, ["config", "validate", "c.yaml"], catch_exceptions=False)
    return result.exit_code, result.stderr.splitlines()


@pytest.mark.parametrize("key", ["packing", "neat_packing"])
def test_packing_needs_cutoff_len_a_multiple_of_8(runner: CliRunner, key: str) -> None:
    assert validate(runner, f"{key}: true\ncutoff_len: 2047\n") == (1, [
        "Error: c.yaml",
        "  dataset.cutoff_len: 2047 is not a multiple of 8: with packing, LLaMA-Factory <= 0.9.5 crashes "
        "at the first step for mRoPE models such as GLM-OCR ('Merged position_ids shape mismatch', "
        "LLaMA-Factory issue 10782); set cutoff_len: 2040",
    ])


def test_packing_warns_that_long_samples_are_dropped(runner: CliRunner) -> None:
    assert validate(runner, "packing: true\n") == (0, ["OK: c.yaml", PACKING_WARNING])


def test_packing_drop_count_from_the_data_check() -> None:
    cfg = from_flat({"model_name_or_path": "m", "packing": True, "cutoff_len": 1024}, "c")
    note = packing_drop_note(cfg, "mine", [100, 1023, 1024, 5000, None])
    assert note == ("dataset mine: packing will drop 2 sample(s) longer than 1023 tokens (cutoff_len - 1) "
                    "instead of truncating them; raise cutoff_len to keep them")
    assert packing_drop_note(cfg, "mine", [100, 1023]) is None
    unpacked = from_flat({"model_name_or_path": "m", "cutoff_len": 1024}, "c")
    assert packing_drop_note(unpacked, "mine", [5000]) is None


def test_liger_kernel_does_nothing_for_glm_ocr(runner: CliRunner) -> None:
    assert validate(runner, "enable_liger_kernel: true\n") == (0, [
        "OK: c.yaml",
        "Warning: c.yaml: model.enable_liger_kernel: does nothing for GLM-OCR: LLaMA-Factory <= 0.9.5 has "
        "no Liger kernel for glm_ocr (it logs 'Current model does not support liger kernel.') but still "
        "requires the liger-kernel package; remove it",
    ])


@pytest.mark.parametrize(("text", "expected"), [
    ("finetuning_type: full\nquantization_bit: 4\n",
     "  model.quantization_bit: quantization (QLoRA) only works with LoRA: remove it or set finetuning_type: lora"),
    ("quantization_bit: 3\n", "  model.quantization_bit: bitsandbytes quantizes to 4 or 8 bits, not 3"),
])
def test_quantization_rules(runner: CliRunner, text: str, expected: str) -> None:
    assert validate(runner, text) == (1, ["Error: c.yaml", expected])


def test_quantization_needs_bitsandbytes_and_a_gpu(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    assert validate(runner, "quantization_bit: 4\n") == (0, ["OK: c.yaml"])
    use_host(monkeypatch, fake_host((), missing=("bitsandbytes",), importable_all=True))
    assert validate(runner, "quantization_bit: 4\n") == (0, [
        "OK: c.yaml",
        "Warning: c.yaml: model.quantization_bit: needs the bitsandbytes package: pip install bitsandbytes",
        "Warning: c.yaml: model.quantization_bit: bitsandbytes quantization needs a CUDA GPU; remove "
        "quantization_bit to train on the CPU",
    ])


def test_a_tracker_must_be_importable(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, fake_host((H100,), missing=("wandb",), importable_all=True))
    assert validate(runner, "report_to: [tensorboard, wandb]\n") == (0, [
        "OK: c.yaml",
        "Warning: c.yaml: output.report_to: wandb is not installed, so the run would fail at its first "
        "step: pip install wandb, or report_to: tensorboard (local, in the train extra)",
    ])


def test_a_missing_tracker_stops_train_before_launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_host(monkeypatch, fake_host((H100,), missing=("wandb",), importable_all=True))
    Path("c.yaml").write_text(MINIMAL + "output_dir: out\nreport_to: wandb\n")
    result = CliRunner().invoke(cli, ["train", "c.yaml"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: c.yaml",
        "  output.report_to: wandb is not installed, so the run would fail at its first step: pip "
        "install wandb, or report_to: tensorboard (local, in the train extra)",
    ]


NOW = datetime(2026, 11, 29, 12, 0, 5)


def cfg_with(text: str):  # type: ignore[no-untyped-def]
    import yaml

    return from_flat(yaml.safe_load(MINIMAL + text), "c.yaml")


def test_tensorboard_defaults_come_from_output_dir(tmp_path: Path) -> None:
    cfg = cfg_with("output_dir: saves/lora\nreport_to: tensorboard\n")
    got = tracking_defaults(cfg, Stack({"transformers": "5.6.0"}), {}, now=NOW, host="node1")
    logdir = tmp_path / "saves" / "lora" / "runs" / "Nov29_12-00-05_node1"
    assert got.values == {"run_name": "saves/lora"}
    assert got.env == {"TENSORBOARD_LOGGING_DIR": str(logdir)}
    assert got.reasons == [
        "run_name: saves/lora (the output_dir, as transformers 4 named runs; shown by tensorboard)",
        f"TENSORBOARD_LOGGING_DIR={logdir} (TensorBoard event files; from output_dir/runs/<time>_<host>: "
        "transformers 5.6.0 reads it from the environment, not from logging_dir)",
    ]
    old = tracking_defaults(cfg, Stack({"transformers": "4.57.0"}), {}, now=NOW, host="node1")
    assert old.values == {"run_name": "saves/lora", "logging_dir": str(logdir)}


def test_tracking_defaults_keep_what_the_user_chose(tmp_path: Path) -> None:
    stack = Stack({"transformers": "5.6.0"})
    cfg = cfg_with("output_dir: out\nreport_to: tensorboard\nrun_name: mine\nlogging_dir: tb\n")
    got = tracking_defaults(cfg, stack, {}, now=NOW, host="h")
    assert got.values == {} and got.env == {"TENSORBOARD_LOGGING_DIR": str(tmp_path / "tb")}
    preset_env = tracking_defaults(cfg_with("output_dir: out\nreport_to: tensorboard\n"), stack,
                                   {"TENSORBOARD_LOGGING_DIR": "/logs"}, now=NOW, host="h")
    assert preset_env.env == {}
    assert preset_env.reasons[-1] == "TensorBoard event files go to /logs (TENSORBOARD_LOGGING_DIR is set)"
    assert tracking_defaults(cfg_with("output_dir: out\nreport_to: none\n"), stack, {}).values == {}
    wandb = tracking_defaults(cfg_with("output_dir: out\nreport_to: wandb\n"), stack, {})
    assert wandb.values == {"run_name": "out"} and wandb.env == {}


def test_the_launch_plan_carries_the_tracking_defaults(tmp_path: Path) -> None:
    Path("c.yaml").write_text(MINIMAL + "output_dir: out\nreport_to: tensorboard\nbf16: false\n"
                              "enable_liger_kernel: true\n")
    plan = prepare(LaunchRequest(config=Path("c.yaml"), check_data=False),
                   host=fake_host((H100,), stack=Stack({"transformers": "5.6.0"}), importable_all=True))
    assert plan.env["TENSORBOARD_LOGGING_DIR"].startswith(str(tmp_path / "out" / "runs") + "/")
    assert "run_name: out\n" in plan.yaml_text and "report_to: tensorboard\n" in plan.yaml_text
    assert "enable_liger_kernel: true\n" in plan.yaml_text
    assert any(w.startswith("model.enable_liger_kernel: does nothing for GLM-OCR") for w in plan.warnings)


def test_summary_names_the_event_files(tmp_path: Path) -> None:
    logdir = tmp_path / "runs" / "x"
    env = {"TENSORBOARD_LOGGING_DIR": str(logdir)}
    assert summary_rows({}, {}) == []
    assert summary_rows(env) == [("tensorboard", f"{logdir} (no event files written)")]
    logdir.mkdir(parents=True)
    (logdir / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    assert summary_rows({}, env) == [
        ("tensorboard", f"{logdir} (1 event file; view: tensorboard --logdir {logdir})")]

"""What we write is accepted by the installed LLaMA-Factory's own argument parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmocr_lf.config import preset, render_config
from glmocr_lf.runtime.machine import has_bf16_gpu
from glmocr_lf.runtime.versions import Stack

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("llamafactory")


def lf_parse(path: Path) -> Any:
    """Parse exactly as `llamafactory-cli train FILE` does (OmegaConf load, HfArgumentParser.parse_dict)."""
    from llamafactory.hparams.parser import _parse_train_args
    from omegaconf import OmegaConf

    args = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(args, dict)
    if args.get("bf16") and not has_bf16_gpu():
        args["use_cpu"] = True  # transformers refuses bf16 without a GPU unless told it is a CPU run
    return _parse_train_args(args)


def shipped_yamls() -> list[Path]:
    found = sorted((REPO / "examples").rglob("*.yaml")) + sorted((REPO / "templates").rglob("*.yaml"))
    return [p for p in found if "export" not in p.name]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_rendered_presets_parse(method: str, tmp_path: Path) -> None:
    text, _ = render_config(preset(method), Stack.detect())  # type: ignore[arg-type]
    path = tmp_path / f"{method}.yaml"
    path.write_text(text)
    model_args, data_args, training_args, finetuning_args, _ = lf_parse(path)
    assert finetuning_args.finetuning_type == method
    assert data_args.template == "glm_ocr"
    assert model_args.image_max_pixels == 589824
    assert training_args.per_device_train_batch_size == 4


def test_config_new_output_parses(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from glmocr_lf.cli import cli

    out = tmp_path / "x.yaml"
    result = CliRunner().invoke(cli, ["config", "new", "--method", "lora", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0
    lf_parse(out)


def test_every_shipped_yaml_parses() -> None:
    paths = shipped_yamls()
    assert any(p.parent.name == "vendor" for p in paths)
    for path in paths:
        lf_parse(path)


def test_llamafactory_rejects_our_typo_too(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("model_name_or_path: x\nlora_rnak: 8\n")
    with pytest.raises(ValueError, match="lora_rnak"):
        lf_parse(path)


def test_llamafactory_keys_we_pass_through_parse(tmp_path: Path) -> None:
    """Keys beyond our typed sections, checked against LLaMA-Factory's table, reach its parser as written."""
    from glmocr_lf.config import load_config

    source = tmp_path / "in.yaml"
    source.write_text(
        "model_name_or_path: zai-org/GLM-OCR\ntemplate: glm_ocr\nbf16: false\n"
        "optim: adamw_torch_fused\nneftune_noise_alpha: 5\nsave_strategy: steps\n"
        "lr_scheduler_kwargs: {min_lr: 1.0e-6}\nweight_decay: 0.01\nseed: 7\nreport_to: tensorboard\n"
        "packing: true\nsave_total_limit: 2\nload_best_model_at_end: false\n")
    text, _ = render_config(load_config(source), Stack.detect())
    path = tmp_path / "out.yaml"
    path.write_text(text)
    _, data_args, training_args, _, _ = lf_parse(path)
    assert training_args.optim == "adamw_torch_fused"
    assert training_args.neftune_noise_alpha == 5
    assert training_args.save_strategy == "steps"
    assert training_args.lr_scheduler_kwargs == {"min_lr": 1.0e-6}
    assert (training_args.weight_decay, training_args.seed) == (0.01, 7)
    assert training_args.report_to == ["tensorboard"]
    assert data_args.packing is True

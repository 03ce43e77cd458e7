"""`glmocr-lf config`: new, validate, schema, through the CLI with exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Invoke, needs_stack

from glmocr_lf.runtime.versions import installed


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "model_name_or_path: zai-org/GLM-OCR\ntemplate: glm_ocr\n"


def test_new_then_validate_exits_0(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "lora", "-o", "x.yaml")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote x.yaml"
    result = invoke("config", "validate", "x.yaml")
    assert result.exit_code == 0
    assert "OK: x.yaml" in result.stderr.splitlines()


def test_new_prints_yaml_in_llamafactory_section_order(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "full", "--model", "/models/glm", "--dataset", "mine")
    assert result.exit_code == 0
    headers = [line for line in result.stdout.splitlines() if line.startswith("### ")]
    assert headers == ["### model", "### method", "### dataset", "### output", "### train"]
    assert "model_name_or_path: /models/glm" in result.stdout
    assert "dataset: mine" in result.stdout
    assert "finetuning_type: full" in result.stdout


def test_new_set_overrides_and_types(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "lora", "--set", "lora_rank=16",
                    "--set", "bf16=false", "--set", "learning_rate=2e-4", "-o", "x.yaml")
    assert result.exit_code == 0
    text = Path("x.yaml").read_text()
    assert "lora_rank: 16 " in text
    assert "bf16: false " in text
    assert "learning_rate: 0.0002 " in text


@needs_stack  # without it, a key we do not model is a warning: see test_lfkeys.py
def test_new_set_typo_suggests(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "lora", "--set", "lora_rnak=8")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: override", "  lora_rnak: unknown key; did you mean 'lora_rank' (method section)?"]


def test_new_refuses_to_overwrite_without_force(invoke: Invoke) -> None:
    write(Path("x.yaml"), "keep me\n")
    result = invoke("config", "new", "--method", "lora", "-o", "x.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: x.yaml: already exists", "Hint: pass --force to overwrite it"]
    assert Path("x.yaml").read_text() == "keep me\n"
    assert invoke("config", "new", "--method", "lora", "-o", "x.yaml", "--force").exit_code == 0


@needs_stack  # without it, a key we do not model is a warning: see test_lfkeys.py
def test_typo_names_the_right_key(invoke: Invoke) -> None:
    write(Path("bad.yaml"), MINIMAL + "lora_rnak: 8\n")
    result = invoke("config", "validate", "bad.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: bad.yaml", "  lora_rnak: unknown key; did you mean 'lora_rank' (method section)?"]


def test_fp16_fails_with_reason(invoke: Invoke) -> None:
    write(Path("fp16.yaml"), MINIMAL + "fp16: true\n")
    result = invoke("config", "validate", "fp16.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: fp16.yaml",
        "  train.fp16: GLM models give NaN losses in fp16; use bf16: true on a bf16 GPU, or bf16: false (fp32) on the CPU",
    ]


def test_yaml_syntax_error_reports_line(invoke: Invoke) -> None:
    write(Path("broken.yaml"), "model_name_or_path: x\nlora_rank: [8\ntemplate: glm_ocr\n")
    result = invoke("config", "validate", "broken.yaml")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: broken.yaml"
    assert lines[1].startswith("  line 3, column ")
    assert "YAML syntax error" in lines[1]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("finetuning_type: full\nlora_rank: 8\n",
         "  method.lora_rank: only applies to LoRA; remove it or set finetuning_type: lora"),
        ("template: glm4v\n", "  dataset.template: GLM-OCR needs template: glm_ocr (got 'glm4v'); other templates tokenise images and answers differently"),
        ("image_max_pixels: 100\nimage_min_pixels: 200\n",
         "  model.image_max_pixels: 100 is smaller than image_min_pixels (200); raise it or lower image_min_pixels"),
        ("train_on_prompt: true\n", "  dataset.train_on_prompt: LLaMA-Factory refuses it for the glm_ocr template; remove it"),
        ("flash_attn: fa3\n", "  model.flash_attn: fa3 is not implemented for GLM-OCR in LLaMA-Factory; use auto (SDPA) or fa2"),
        ("dataset: a\nval_size: 0.1\neval_dataset: b\n", "  eval.val_size: set either val_size or eval_dataset, not both"),
        ("warmup_ratio: 0.1\nwarmup_steps: 10\n",
         "  train.warmup_ratio: set either warmup_ratio or warmup_steps (a value < 1 is a ratio), not both"),
        ("learning_rate: 0\n", "  train.learning_rate: Input should be greater than 0"),
        ("finetuning_type: qlora\n", "  method.finetuning_type: Input should be 'lora' or 'full'"),
        ("do_train: true\n", "  dataset.dataset: training needs a dataset name; register one with `glmocr-lf data register NAME FILE`"),
    ],
)
def test_rules(invoke: Invoke, extra: str, expected: str) -> None:
    body = MINIMAL.replace("template: glm_ocr\n", "") if "template:" in extra else MINIMAL
    write(Path("c.yaml"), body + extra)
    result = invoke("config", "validate", "c.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: c.yaml", expected]


@needs_stack  # without it, a key we do not model is a warning: see test_lfkeys.py
def test_every_problem_reported_not_just_the_first(invoke: Invoke) -> None:
    write(Path("c.yaml"), "lora_rnak: 8\nlogging_steps: -1\n")
    result = invoke("config", "validate", "c.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: c.yaml",
        "  lora_rnak: unknown key; did you mean 'lora_rank' (method section)?",
        "  model.model_name_or_path: required key is missing",
        "  output.logging_steps: Input should be greater than 0",
    ]
    assert "pydantic" not in result.stderr


def test_rules_are_checked_in_the_same_pass_as_types(invoke: Invoke) -> None:
    """fp16 is refused beside a type error, not only once the type error is fixed; a rule reading
    a refused value (eval_strategy needs val_size) is not misreported."""
    write(Path("c.yaml"), MINIMAL + "learning_rate: -1\nfp16: true\neval_strategy: steps\nval_size: many\n"
                                    "finetuning_type: full\nlora_rank: 8\n")
    result = invoke("config", "validate", "c.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: c.yaml",
        "  train.learning_rate: Input should be greater than 0",
        "  eval.val_size: Input should be a valid number, unable to parse string as a number",
        "  method.lora_rank: only applies to LoRA; remove it or set finetuning_type: lora",
        "  train.fp16: GLM models give NaN losses in fp16; use bf16: true on a bf16 GPU, or bf16: false (fp32) on the CPU",
    ]


def test_validate_several_files_exit_1_if_any_bad(invoke: Invoke) -> None:
    write(Path("good.yaml"), MINIMAL)
    write(Path("bad.yaml"), MINIMAL + "fp16: true\n")
    result = invoke("config", "validate", "good.yaml", "bad.yaml", "missing.yaml")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "OK: good.yaml" in lines
    assert "Error: bad.yaml" in lines
    assert lines[-2:] == ["Error: missing.yaml", "  file not found"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "  file is empty"), ("- a\n- b\n", "  must be a mapping of key: value, got a list")],
)
def test_validate_non_mapping(invoke: Invoke, content: str, message: str) -> None:
    write(Path("c.yaml"), content)
    result = invoke("config", "validate", "c.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: c.yaml", message]


def test_validate_directory_and_non_utf8(invoke: Invoke) -> None:
    Path("adir").mkdir()
    Path("latin.yaml").write_bytes(b"model_name_or_path: caf\xe9\n")
    result = invoke("config", "validate", "adir", "latin.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: adir", "  is a directory, not a YAML file",
        "Error: latin.yaml", "  not UTF-8 text (byte 23)",
    ]


def test_bf16_warns_without_bf16_gpu(invoke: Invoke) -> None:  # the fake host has no GPU
    write(Path("c.yaml"), MINIMAL + "bf16: true\n")
    result = invoke("config", "validate", "c.yaml")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "OK: c.yaml",
        "Warning: c.yaml: train.bf16: this machine has no GPU with bf16 (compute capability >= 8.0); "
        "training here would fail: set bf16: false to train in fp32",
    ]


def test_schema_is_json_with_every_key(invoke: Invoke) -> None:
    result = invoke("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is not (installed("llamafactory") and installed("transformers"))
    assert schema["required"] == ["model_name_or_path"]
    for key in ("lora_rank", "image_max_pixels", "val_size", "deepspeed", "tokenized_path", "seed"):
        assert key in schema["properties"]
    assert schema["properties"]["lora_rank"]["x-section"] == "method"


def test_usage_error_exits_2(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "qlora")
    assert result.exit_code == 2


@needs_stack  # without it, a key we do not model is a warning: see test_lfkeys.py
def test_debug_shows_traceback(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime.errors import ConfigError

    with pytest.raises(ConfigError):
        invoke("--debug", "config", "new", "--method", "lora", "--set", "lora_rnak=8")
    monkeypatch.setenv("GLMOCR_LF_DEBUG", "1")
    with pytest.raises(ConfigError):
        invoke("config", "new", "--method", "lora", "--set", "lora_rnak=8")


def test_version_lists_stack(invoke: Invoke) -> None:
    from glmocr_lf import __version__
    from glmocr_lf.runtime.versions import installed

    result = invoke("--version")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"glmocr-lf {__version__}"
    version = installed("llamafactory")
    assert lines[1] == (f"llamafactory {version}" if version else "llamafactory not installed")


@needs_stack  # without it, a key we do not model is a warning: see test_lfkeys.py
def test_readme_example_unknown_key_and_rule_reported_together(invoke: Invoke) -> None:
    write(Path("bad.yaml"), "model_name_or_path: zai-org/GLM-OCR\nlora_rnak: 8\nfp16: true\n")
    result = invoke("config", "validate", "bad.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: bad.yaml",
        "  lora_rnak: unknown key; did you mean 'lora_rank' (method section)?",
        "  train.fp16: GLM models give NaN losses in fp16; use bf16: true on a bf16 GPU, or bf16: false (fp32) on the CPU",
    ]


def test_validate_warns_about_fa2_like_doctor(invoke: Invoke) -> None:
    write(Path("fa2.yaml"), "model_name_or_path: zai-org/GLM-OCR\nflash_attn: fa2\n")
    result = invoke("config", "validate", "fa2.yaml")  # the pinned stack: transformers 5.6.0
    assert result.exit_code == 0
    assert ("Warning: fa2.yaml: model.flash_attn: fa2 (FlashAttention-2) is broken with transformers 5.6.0 "
            "(LLaMA-Factory#10610): use auto or sdpa") in result.stderr.splitlines()


def test_config_get_prints_strings_as_written_and_the_rest_as_json(invoke: Invoke) -> None:
    Path("c.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\ndataset: [a, b]\nbf16: true\n"
                              "learning_rate: 1.0e-4\nlr_scheduler_kwargs:\n  min_lr: 1.0e-6\n")
    for key, printed in (("model_name_or_path", "zai-org/GLM-OCR\n"), ("dataset", "a,b\n"), ("bf16", "true\n"),
                         ("learning_rate", "0.0001\n"), ("lr_scheduler_kwargs", '{"min_lr": 1e-06}\n'),
                         ("max_steps", "")):  # a known key the file leaves unset: nothing
        result = invoke("config", "get", "c.yaml", key)
        assert (result.exit_code, result.stdout) == (0, printed), key


@needs_stack  # without LLaMA-Factory's key table no key can be called unknown
def test_config_get_of_an_unknown_key_is_an_error(invoke: Invoke) -> None:
    Path("c.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\n")
    result = invoke("config", "get", "c.yaml", "learning_rat")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["Error: c.yaml", "  learning_rat: unknown key; did you mean "
                                          "'learning_rate' (train section)?"]


def test_dataset_takes_registered_names_not_files(invoke: Invoke) -> None:
    result = invoke("config", "new", "--method", "lora", "--dataset", "../scans.json", "-o", "c.yaml")
    assert result.exit_code == 1 and not Path("c.yaml").exists()
    assert result.stderr.splitlines()[-1] == (
        "  dataset.dataset: '../scans.json' is a file; this key takes names registered in dataset_info.json: "
        "glmocr-lf data register NAME ../scans.json, then use NAME")
    Path("c.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\ndataset: ok_name, my scans.json\n")
    validated = invoke("config", "validate", "c.yaml")
    assert validated.exit_code == 1
    assert validated.stderr.splitlines() == [
        "Error: c.yaml", "  dataset.dataset: 'my scans.json' is a file; this key takes names registered in "
        "dataset_info.json: glmocr-lf data register NAME 'my scans.json', then use NAME"]
    help_text = invoke("config", "new", "--help").stdout
    assert "--dataset NAME " in help_text

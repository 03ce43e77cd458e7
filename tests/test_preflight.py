"""`train` fails before launch, with the fix, on what LLaMA-Factory would die of in its first minute."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import Invoke, put_in_hf_cache

HUB_CONFIG = '{"model_type": "glm_ocr"}'


def test_readme_first_example_offline_without_the_model_fails_before_launch(invoke: Invoke) -> None:
    assert invoke("init", "my-ocr", "--example").exit_code == 0
    os.chdir("my-ocr")
    result = invoke("train", "configs/lora.yaml")  # HF_HUB_OFFLINE=1 (conftest), empty cache
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: configs/lora.yaml"
    assert lines[-1:] == [
        "  model.model_name_or_path: zai-org/GLM-OCR is not in the Hugging Face cache and HF_HUB_OFFLINE "
        "is set; LLaMA-Factory would fail to load its tokenizer. Fix: download it on a connected machine "
        "(`hf download zai-org/GLM-OCR`) and bring its cache (HF_HOME) or the folder here, then pass that "
        "folder; to try the pipeline here without it: `glmocr-lf smoke-model tiny`, then "
        "`glmocr-lf train CONFIG model_name_or_path=tiny bf16=false`",
    ]
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": HUB_CONFIG})
    assert invoke("train", "configs/lora.yaml", "bf16=false", "--dry-run").exit_code == 0


def test_relative_dataset_dir_names_the_directory_it_resolved_against(invoke: Invoke, tmp_path: Path) -> None:
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": HUB_CONFIG})
    assert invoke("init", "proj", "--example").exit_code == 0
    result = invoke("train", "proj/configs/lora.yaml", "bf16=false", "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"cd {tmp_path} && ")  # the plan, then the problems
    assert result.stderr.splitlines()[-2:] == [
        f"Error: {tmp_path / 'data' / 'dataset_info.json'}: not found (dataset_dir 'data' resolves against "
        f"the working directory {tmp_path}, as LLaMA-Factory resolves it; run glmocr-lf from the project root)",
        "Hint: register a dataset with `glmocr-lf data register NAME FILE --data-dir DIR`",
    ]


def _edit_entry(**changes: object) -> None:
    info_path = Path("data/dataset_info.json")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["cosyn_chemical"] = {k: v for k, v in {**info["cosyn_chemical"], **changes}.items() if v is not None}
    info_path.write_text(json.dumps(info), encoding="utf-8")


def test_hand_edited_entry_is_checked_with_its_own_mapping(invoke: Invoke) -> None:
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": HUB_CONFIG})
    assert invoke("init", "proj", "--example").exit_code == 0
    os.chdir("proj")
    _edit_entry(columns={"messages": "conversations"})
    result = invoke("train", "configs/lora.yaml", "bf16=false")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: dataset cosyn_chemical: 8 error(s); training would fail or silently drop samples"
    assert lines[1].endswith("cosyn_chemical.json: sample 0: conversations: missing")

    _edit_entry(columns={"messages": "messages", "images": "images"}, file_name=None)
    result = invoke("train", "configs/lora.yaml", "bf16=false")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith(
        "data/dataset_info.json: dataset cosyn_chemical has neither file_name nor a hub/script source "
        "(hf_hub_url, ms_hub_url, om_hub_url, script_url, cloud_file_name); LLaMA-Factory cannot load it")


def test_dry_run_without_the_model_prints_the_plan_and_every_problem(invoke: Invoke, tmp_path: Path) -> None:
    """A login node: no model in the cache, no bf16 GPU, a sample the data check refuses, --gpus it
    does not have. One run names them all, after the plan (which `train` would run once they are fixed)."""
    assert invoke("init", "proj", "--example").exit_code == 0
    os.chdir("proj")
    _edit_entry(columns={"messages": "conversations"})
    result = invoke("train", "configs/lora.yaml", "--gpus", "0", "--dry-run")
    assert result.exit_code == 1
    first, *rest = result.stdout.splitlines()
    assert first.startswith(f"cd {tmp_path / 'proj'} && CUDA_VISIBLE_DEVICES=0 ")
    assert "### model" in rest
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: train options", "Error: configs/lora.yaml",
                      "Error: dataset cosyn_chemical: 8 error(s); training would fail or silently drop samples"]
    stderr = result.stderr
    assert "  --gpus: 0: this machine has no NVIDIA GPU (nvidia-smi lists none); drop --gpus" in stderr
    assert "  train.bf16: this machine has no GPU with bf16" in stderr
    assert "  model.model_name_or_path: zai-org/GLM-OCR is not in the Hugging Face cache" in stderr
    assert stderr.index("Error: train options") > stderr.index("kernels: off")  # notes first, problems last
    without = invoke("train", "configs/lora.yaml", "--gpus", "0")  # the same problems, no plan
    assert without.exit_code == 1 and without.stdout == ""
    assert [line for line in without.stderr.splitlines() if line.startswith("Error: ")] == errors


def test_a_config_that_does_not_load_is_reported_with_the_options(invoke: Invoke) -> None:
    """Nothing can be planned: the option problems and the config's, in one run (options used to
    hide the config's until fixed)."""
    Path("c.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\nlearning_rate: -1\nfp16: true\n")
    result = invoke("train", "c.yaml", "--nnodes", "2", "--dry-run")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: train options",
        "  --master-addr: multi-node training needs the address of node 0 on every node",
        "Error: c.yaml",
        "  train.learning_rate: Input should be greater than 0",
        "  train.fp16: GLM models give NaN losses in fp16; use bf16: true on a bf16 GPU, or bf16: false (fp32) on the CPU",
    ]

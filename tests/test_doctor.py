"""`glmocr-lf doctor`: versions, GPUs and model checks, each finding with its fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import invoke, needs_stack

from glmocr_lf.cli import cli
from glmocr_lf.runtime import versions
from glmocr_lf.runtime.host import Host
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack

GOOD = {"llamafactory": "0.9.5", "transformers": "5.5.4", "torch": "2.14.1", "torchvision": "0.29.1",
        "torchaudio": "2.11.0", "peft": "0.18.1", "trl": "0.24.0", "datasets": "4.0.0",
        "accelerate": "1.11.0", "deepspeed": None}
# doctor reads the real packages' metadata and imports beside its fakes
pytestmark = [needs_stack, pytest.mark.real_stack]

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
T4 = Gpu(1, "Tesla T4", 15360, (7, 5))

GOOD_LINES = [
    "ok    llamafactory: 0.9.5",
    "ok    transformers: 5.5.4 (has glm_ocr)",
    "ok    torch: 2.14.1",
    "ok    torchvision: 0.29.1",
    "ok    torchaudio: 2.11.0",
    "ok    peft: 0.18.1",
    "ok    trl: 0.24.0",
    "ok    datasets: 4.0.0",
    "ok    accelerate: 1.11.0",
    "ok    deepspeed: not installed (optional: only `--deepspeed` needs it; pip install deepspeed)",
    "ok    version check: llamafactory accepts the installed versions (no DISABLE_VERSION_CHECK needed)",
    "ok    gpu 0: NVIDIA H100 80GB HBM3, 79.6 GiB, compute capability 9.0, bf16 true",
]


@dataclass
class FakeMachine:
    """The host doctor sees: versions (edit them in a test), GPUs, packages that do not import."""

    versions: dict[str, str | None]
    gpus: tuple[Gpu, ...] = (H100,)
    broken: tuple[str, ...] = ()

    def host(self) -> Host:
        return Host(self.gpus, Stack(self.versions), importable=lambda module: module not in self.broken)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> FakeMachine:
    fake = FakeMachine(dict(GOOD))
    monkeypatch.setattr(Host, "detect", classmethod(lambda cls: fake.host()))
    return fake


def run(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, ["doctor", *args], catch_exceptions=False)
    return result.exit_code, result.stderr.splitlines(), result.stdout


def test_a_good_stack_is_ready(stack: FakeMachine) -> None:
    code, lines, stdout = run()
    assert code == 0
    assert lines == [*GOOD_LINES, "ready: 0 errors, 0 warnings"]
    assert stdout == ""


def test_torch_2_9_is_an_error_with_its_fix(stack: FakeMachine) -> None:
    stack.versions["torch"] = "2.9.1"
    code, lines, _ = run()
    assert code == 1
    assert lines[2:4] == [
        "error torch: 2.9.1: LLaMA-Factory refuses torch 2.9.x for GLM-OCR (Conv3d bug)",
        "      fix: pip install 'torch>=2.10' with its matching torchvision",
    ]
    assert lines[-1] == "Error: 1 error, 0 warnings"


def test_transformers_without_glm_ocr(stack: FakeMachine) -> None:
    stack.versions["transformers"] = "5.0.0"
    code, lines, _ = run()
    assert code == 1
    assert lines[1:3] == [
        "error transformers: 5.0.0 has no glm_ocr model (first in 5.1.0)",
        "      fix: pip install 'transformers>=5.1.0'",
    ]


def test_transformers_5_6_0_flags_flash_attn_fa2(stack: FakeMachine) -> None:
    stack.versions["transformers"] = "5.6.0"
    code, lines, _ = run()
    assert code == 0
    assert lines[1:4] == [
        "ok    transformers: 5.6.0 (has glm_ocr)",
        "warn  flash_attn: fa2 (FlashAttention-2) is broken with transformers 5.6.0 (LLaMA-Factory#10610)",
        "      fix: keep flash_attn: auto or sdpa in your configs (the presets do), or use another "
        "transformers for FlashAttention-2",
    ]
    assert lines[-1] == "ready: 0 errors, 1 warning"


def test_versions_llamafactory_refuses_need_disable_version_check(stack: FakeMachine) -> None:
    if versions.metadata.requires("llamafactory") is None:  # pragma: no cover
        pytest.skip("llamafactory's requirements are not readable here")
    stack.versions["transformers"] = "5.24.0"
    code, lines, _ = run()
    assert code == 0
    check = [i for i, line in enumerate(lines) if line.startswith("warn  version check:")]
    assert len(check) == 1
    assert lines[check[0]].startswith("warn  version check: llamafactory would refuse transformers 5.24.0 "
                                      "(llamafactory wants ")
    assert lines[check[0] + 1] == ("      fix: nothing to do for `glmocr-lf train` (it sets DISABLE_VERSION_CHECK=1 "
                                   "and says so); set it yourself to run llamafactory-cli directly")


def test_missing_and_broken_packages(stack: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.versions["torchvision"] = None
    stack.versions["llamafactory"] = None
    stack.broken = ("torchaudio",)
    code, lines, _ = run()
    assert code == 1
    errors = [line for line in lines if line.startswith("error")]
    assert errors == [
        "error llamafactory: not installed; `glmocr-lf train` and `export` run llamafactory-cli",
        "error torchvision: not installed; GLM-OCR's video processor needs it; without it AutoProcessor "
        "fails and LLaMA-Factory says 'Processor was not found'",
        "error torchaudio: 2.11.0 is in the package metadata but cannot be imported; LLaMA-Factory's "
        "mm_plugin imports it for every multimodal model",
    ]
    assert "      fix: pip install --no-deps llamafactory==0.9.5 (`make install` in a glmocr-lf checkout, " \
           "or README § Install)" in lines
    assert "ok    version check: skipped: llamafactory is not installed" in lines
    assert lines[-1] == "Error: 3 errors, 0 warnings"


def test_cpu_only_machine(stack: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.gpus = ()
    code, lines, _ = run()
    assert code == 0
    assert lines[-3:] == [
        "warn  gpu: no NVIDIA GPU found (nvidia-smi): CPU-only, bf16 false",
        "      fix: train on a machine with a GPU of compute capability >= 8.0; here, training runs in fp32 "
        "on the CPU (bf16: false): slow, for small models and dry runs such as `glmocr-lf smoke`",
        "ready: 0 errors, 1 warning",
    ]


def test_gpu_without_bf16(stack: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.gpus = (H100, T4)
    code, lines, _ = run()
    assert code == 0
    assert lines[-4:] == [
        "ok    gpu 0: NVIDIA H100 80GB HBM3, 79.6 GiB, compute capability 9.0, bf16 true",
        "warn  gpu 1: Tesla T4, 15.0 GiB, compute capability 7.5, bf16 false (GLM-OCR gives NaN losses in fp16)",
        "      fix: set bf16: false in your configs to train in fp32, or use a GPU of compute capability >= 8.0",
        "ready: 0 errors, 1 warning",
    ]


def test_json_report_on_stdout(stack: FakeMachine) -> None:
    stack.versions["torch"] = "2.9.0"
    code, lines, stdout = run("--json")
    assert code == 1
    report = json.loads(stdout)
    assert (report["ok"], report["errors"], report["warnings"]) == (False, 1, 0)
    assert report["versions"] == {**GOOD, "torch": "2.9.0"}
    assert report["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559,
                               "compute_capability": "9.0", "bf16": True}]
    assert report["findings"][2] == {
        "check": "torch", "status": "error",
        "detail": "2.9.0: LLaMA-Factory refuses torch 2.9.x for GLM-OCR (Conv3d bug)",
        "fix": "pip install 'torch>=2.10' with its matching torchvision"}
    assert {f["status"] for f in report["findings"][3:]} == {"ok"}
    assert lines == ["Error: 1 error, 0 warnings"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    return build_tiny_glm_ocr(tmp_path_factory.mktemp("doctor") / "tiny")


def test_model_tiny_glm_ocr_is_ok(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Host.detect()
    monkeypatch.setattr(Host, "detect", classmethod(lambda cls: replace(real, gpus=(H100,))))
    code, lines, _ = run("--model", str(tiny_model))
    assert code == 0, lines
    assert lines[-8:-1] == [
        "ok    model.config: model_type: glm_ocr",
        "ok    model.weights: model.safetensors",
        "ok    model.tokenizer: tokenizer.json",
        "ok    model.image_processor: processor_config.json: image_processor",
        "ok    model.video_processor: processor_config.json: video_processor",
        "ok    model.chat_template: chat_template.jinja",
        "ok    model.processor: Glm46VProcessor with Glm46VImageProcessor and Glm46VVideoProcessor",
    ]


def test_model_without_video_processor_config(tiny_model: Path, tmp_path: Path,
                                              stack: FakeMachine) -> None:
    # the hub checkpoint's layout: one file per processor; this copy lost the video one
    model = tmp_path / "incomplete"
    shutil.copytree(tiny_model, model)
    bundled = json.loads((model / "processor_config.json").read_text())
    image = {**bundled.pop("image_processor"), "processor_class": bundled["processor_class"]}
    del bundled["video_processor"]
    (model / "processor_config.json").write_text(json.dumps(bundled))
    (model / "preprocessor_config.json").write_text(json.dumps(image))
    code, lines, _ = run("--model", "incomplete")
    assert code == 1
    assert lines[len(GOOD_LINES):] == [
        "ok    model.config: model_type: glm_ocr",
        "ok    model.weights: model.safetensors",
        "ok    model.tokenizer: tokenizer.json",
        "ok    model.image_processor: preprocessor_config.json",
        "error model.video_processor: incomplete has no video_preprocessor_config.json (nor video_processor in "
        "processor_config.json); LLaMA-Factory would fail with 'Processor was not found'",
        "      fix: copy video_preprocessor_config.json from the base model (zai-org/GLM-OCR) into incomplete",
        "ok    model.chat_template: chat_template.jinja",
        "warn  model.processor: not loaded: processor files are missing",
        "      fix: copy the missing files (above), then run doctor again",
        "Error: 1 error, 1 warning",
    ]


def test_model_wrong_type_adapter_missing_and_hub_id(tmp_path: Path, stack: FakeMachine) -> None:
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text('{"model_type": "qwen2_vl"}')
    code, lines, _ = run("--model", "qwen")
    assert code == 1
    assert lines[len(GOOD_LINES):len(GOOD_LINES) + 2] == [
        "error model.config: qwen: model_type is 'qwen2_vl', not 'glm_ocr'",
        "      fix: pass a GLM-OCR checkpoint (zai-org/GLM-OCR) or a model exported from one",
    ]

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "adapter_config.json").write_text("{}")
    code, lines, _ = run("--model", "run")
    assert code == 1
    assert lines[len(GOOD_LINES):] == [
        "error model.config: run is a LoRA adapter, not a model",
        "      fix: pass the base model (zai-org/GLM-OCR), or merge it first: `glmocr-lf export --adapter run`",
        "Error: 1 error, 0 warnings",
    ]

    code, lines, _ = run("--model", "./nope")
    assert code == 1
    assert lines[len(GOOD_LINES):] == [
        "error model: ./nope: no such directory, and not a hub id (owner/name)",
        "      fix: pass a local model directory or a hub id such as zai-org/GLM-OCR",
        "Error: 1 error, 0 warnings",
    ]

    pytest.importorskip("huggingface_hub")
    code, lines, _ = run("--model", "zai-org/GLM-OCR")  # offline (conftest), not in the cache
    assert code == 1
    assert lines[len(GOOD_LINES):] == [
        "error model: zai-org/GLM-OCR is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
        "training would fail to load its tokenizer",
        "      fix: download it on a connected machine (`hf download zai-org/GLM-OCR`) and bring its cache "
        "(HF_HOME) or the folder here, then pass that folder; to try the pipeline here without it: "
        "`glmocr-lf smoke-model tiny`, then `glmocr-lf train CONFIG model_name_or_path=tiny bf16=false`",
        "Error: 1 error, 0 warnings",
    ]


PROBE = """
import sys
from click.testing import CliRunner
from glmocr_lf.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "llamafactory", "datasets", "peft", "torchvision")
               if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
print("EXIT:" + str(result.exit_code))
"""


@pytest.mark.parametrize("args", [["doctor"], ["doctor", "--json"], ["init", "project"], ["init", "--help"]])
def test_doctor_and_init_do_not_import_the_stack(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert "HEAVY:\n" in proc.stdout, proc.stdout + proc.stderr
    # init succeeds; doctor's verdict is the same one it gives in-process on this machine
    expected = 0 if args[0] == "init" else invoke(*args).exit_code
    assert f"EXIT:{expected}" in proc.stdout, proc.stdout + proc.stderr


def test_model_hub_id_in_the_cache_is_checked_like_a_dir(tiny_model: Path, tmp_path: Path,
                                                         stack: FakeMachine) -> None:
    pytest.importorskip("huggingface_hub")
    repo = tmp_path / ".hf" / "hub" / "models--zai-org--GLM-OCR"  # conftest's HF_HOME
    shutil.copytree(tiny_model, repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    code, lines, _ = run("--model", "zai-org/GLM-OCR")
    assert code == 0, lines
    assert lines[len(GOOD_LINES):] == [
        f"ok    model: zai-org/GLM-OCR: found in the Hugging Face cache at {repo / 'snapshots' / ('a' * 40)}",
        "ok    model.config: model_type: glm_ocr",
        "ok    model.weights: model.safetensors",
        "ok    model.tokenizer: tokenizer.json",
        "ok    model.image_processor: processor_config.json: image_processor",
        "ok    model.video_processor: processor_config.json: video_processor",
        "ok    model.chat_template: chat_template.jinja",
        "ok    model.processor: Glm46VProcessor with Glm46VImageProcessor and Glm46VVideoProcessor",
        "ready: 0 errors, 0 warnings",
    ]


def test_doctor_refuses_the_folder_train_refuses(tiny_model: Path, tmp_path: Path,
                                                 stack: dict[str, str | None]) -> None:
    """config.json and the processor files only: no weights, tokenizer or chat template. Doctor once
    said ok to it while train refused it; both now read modelfiles.model_dir_checks."""
    from glmocr_lf.runtime.modelfiles import model_dir_problems

    model = tmp_path / "bare"
    model.mkdir()
    for name in ("config.json", "processor_config.json"):
        shutil.copy(tiny_model / name, model / name)
    code, lines, _ = run("--model", "bare")
    assert code == 1
    assert lines[len(GOOD_LINES):len(GOOD_LINES) + 9] == [
        "ok    model.config: model_type: glm_ocr",
        "error model.weights: bare has no weights (*.safetensors)",
        "      fix: copy the checkpoint's *.safetensors files into it",
        "error model.tokenizer: bare has no tokenizer files (tokenizer.json, tokenizer_config.json)",
        "      fix: copy them from the base model (zai-org/GLM-OCR)",
        "ok    model.image_processor: processor_config.json: image_processor",
        "ok    model.video_processor: processor_config.json: video_processor",
        "error model.chat_template: bare has no chat template",
        "      fix: copy chat_template.jinja from the base model (zai-org/GLM-OCR)",
    ]
    assert lines[len(GOOD_LINES) + 9:] == ["warn  model.processor: not loaded: processor files are missing",
                                         "      fix: copy the missing files (above), then run doctor again",
                                         "Error: 3 errors, 1 warning"]
    assert model_dir_problems(Path("bare")) == [
        "bare has no weights (*.safetensors); copy the checkpoint's *.safetensors files into it",
        "bare has no tokenizer files (tokenizer.json, tokenizer_config.json); copy them from the base "
        "model (zai-org/GLM-OCR)",
        "bare has no chat template; copy chat_template.jinja from the base model (zai-org/GLM-OCR)",
    ]


def test_doctor_reads_the_host_it_is_given() -> None:
    """One host value in, no probe patched: a T4 and a torchvision that does not import."""
    from glmocr_lf.project.doctor import run_doctor

    report = run_doctor(host=Host((T4,), Stack(dict(GOOD)), importable=lambda module: module != "torchvision"))
    assert [(f.check, f.status) for f in report.findings if f.status != "ok"] == [("torchvision", "error"),
                                                                                  ("gpu 1", "warn")]
    assert report.gpus[0]["name"] == "Tesla T4" and report.versions == GOOD

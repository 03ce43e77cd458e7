"""The `compile` kernels piece: when the plan adds it, and what it traces (CPU, "aot_eager")."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SAMPLE_JSON, fake_host, invoke, put_in_hf_cache

from glmocr_lf.config.load import from_flat
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.kernels import DEFAULT_PIECES, ENV_KERNELS
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack, installed
from glmocr_lf.train.fit import optimizer_steps
from glmocr_lf.train.kernels import (
    COMPILE_BREAK_EVEN_STEPS,
    COMPILE_PAYS,
    compile_unmeasured,
    decide,
    with_compile,
)
from glmocr_lf.train.plan import LaunchRequest, prepare

H200 = (Gpu(0, "NVIDIA H200", 143771, (9, 0)),)
PINNED = Stack({"transformers": "5.6.0"})
ON = decide("auto", gpus=H200, liger_version="0.8.5", environ={})
FULL_PAYS = COMPILE_BREAK_EVEN_STEPS["full"] * COMPILE_PAYS


def _modeling():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="needs the training stack (make install)")
    pytest.importorskip("transformers", reason="needs the training stack (make install)")
    from transformers.models.glm_ocr import modeling_glm_ocr

    return modeling_glm_ocr


def _cfg(values: dict[str, object]) -> TrainConfig:
    return from_flat({"model_name_or_path": "zai-org/GLM-OCR", **values}, "test")


def test_optimizer_steps_from_max_steps_or_epochs() -> None:
    assert optimizer_steps(_cfg({"max_steps": 55, "num_train_epochs": 3}), 10_000, 1) == 55
    assert optimizer_steps(_cfg({"max_steps": -1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                            "num_train_epochs": 3}), 1000, 1) == 375  # the vendor's full recipe
    assert optimizer_steps(_cfg({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}), 1001, 2) == 189
    assert optimizer_steps(_cfg({}), 80, 1) == 30  # transformers' defaults: 8 per device, 3 epochs
    assert optimizer_steps(_cfg({"per_device_train_batch_size": 10, "val_size": 0.1, "num_train_epochs": 1}), 1000, 1) == 90
    assert optimizer_steps(_cfg({"per_device_train_batch_size": 10, "val_size": 100, "num_train_epochs": 2}), 1000, 1) == 180
    assert optimizer_steps(_cfg({"num_train_epochs": 3}), None, 1) is None


def test_auto_compiles_a_long_single_gpu_run_and_says_why() -> None:
    long = with_compile(ON, "auto", steps=FULL_PAYS, method="full", unmeasured=None, environ={})
    assert long.pieces == (*DEFAULT_PIECES, "compile")
    assert long.env[ENV_KERNELS] == ",".join((*DEFAULT_PIECES, "compile"))
    assert long.notes[-1].startswith(f"compile: on (auto: ~{FULL_PAYS} optimizer steps; full fine-tuning pays "
                                     f"back the compilation after ~{COMPILE_BREAK_EVEN_STEPS['full']} steps)")
    short = with_compile(ON, "auto", steps=FULL_PAYS - 1, method="full", unmeasured=None, environ={})
    assert short.pieces == DEFAULT_PIECES and short.env == ON.env
    assert short.notes[-1] == (f"compile: off (~{FULL_PAYS - 1} optimizer steps, under the {FULL_PAYS} it takes "
                               f"to be clearly worth it (full fine-tuning pays back the compilation after "
                               f"~{COMPILE_BREAK_EVEN_STEPS['full']} steps)); --compile on to force")
    lora = with_compile(ON, "auto", steps=FULL_PAYS, method="lora", unmeasured=None, environ={})
    assert "compile" not in lora.pieces  # LoRA compiles for longer and saves less per step
    for steps, unmeasured, why in ((10**6, compile_unmeasured(_cfg({}), 2), "several processes or DeepSpeed"),
                                   (10**6, compile_unmeasured(_cfg({"deepspeed": "z2.json"}), 1), "several processes"),
                                   (10**6, compile_unmeasured(_cfg({"torch_compile": True}), 1), "torch_compile: true"),
                                   (None, compile_unmeasured(_cfg({}), 1), "the run's length is unknown")):
        off = with_compile(ON, "auto", steps=steps, method="full", unmeasured=unmeasured, environ={})
        assert "compile" not in off.pieces and off.notes[-1].startswith(f"compile: off ({why}")


def test_compile_on_and_off_override_the_environment_but_auto_keeps_it() -> None:
    env = {ENV_KERNELS: "rms_norm,compile"}
    chosen = decide("auto", gpus=H200, liger_version="0.8.5", environ=env)
    assert with_compile(chosen, "auto", steps=1, method="full", unmeasured=None, environ=env) == chosen
    off = with_compile(chosen, "off", steps=10**6, method="full", unmeasured=None, environ=env)
    assert off.pieces == ("rms_norm",) and off.env[ENV_KERNELS] == "rms_norm"
    forced = with_compile(ON, "on", steps=1, method="lora", unmeasured="several processes", environ={})
    assert forced.pieces[-1] == "compile" and "(--compile on)" in forced.notes[-1]
    kernels_off = decide("none", gpus=H200, liger_version="0.8.5", environ={})
    assert with_compile(kernels_off, "auto", steps=10**6, method="full", unmeasured=None, environ={}) == kernels_off
    forced_off = with_compile(kernels_off, "on", steps=None, method="full", unmeasured=None, environ={})
    assert [p.message.split(", which")[0] for p in forced_off.problems] == [
        "--compile on: torch.compile of the decoder layers runs in the kernels' start-up hook"]


def test_plan_counts_the_samples_and_compiles_when_the_epochs_pay(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """10 samples, max_samples 8, one per step: the epochs decide, and the dry run says so."""
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    monkeypatch.delenv(ENV_KERNELS, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    assert invoke("data", "register", "x", SAMPLE_JSON, "--data-dir", data).exit_code == 0
    epochs = -(-FULL_PAYS // 8)
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: full\n"
        f"dataset: x\ntemplate: glm_ocr\ndataset_dir: {data}\noutput_dir: {tmp_path / 'out'}\nbf16: true\n"
        f"max_samples: 8\nper_device_train_batch_size: 1\nnum_train_epochs: {epochs}\n")
    host = fake_host(H200, stack=PINNED, dists={"liger-kernel": "0.8.5"})
    plan = prepare(LaunchRequest(config=tmp_path / "c.yaml"), host=host)
    assert plan.env[ENV_KERNELS].split(",")[-1] == "compile"
    assert any(n.startswith(f"compile: on (auto: ~{8 * epochs} optimizer steps;") for n in plan.notes)
    short = prepare(LaunchRequest(config=tmp_path / "c.yaml", overrides={"num_train_epochs": 3}), host=host)
    assert "compile" not in short.env[ENV_KERNELS]
    assert any(n.startswith("compile: off (~24 optimizer steps") for n in short.notes)
    assert plan.yaml_text.split("\n", 2)[2].replace(f"num_train_epochs: {epochs}", "num_train_epochs: 3") \
        == short.yaml_text.split("\n", 2)[2]  # compiling is not in LLaMA-Factory's YAML



def test_compiled_decoder_layers_trace_once_for_every_layer_and_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """`compile`: one graph for all layers and padded lengths, no graph break, the eager losses.

    Traced with "aot_eager" (dynamo and AOTAutograd, the parts that decide graphs, breaks and
    recompiles; inductor's code generation runs on the GPU benchmark). liger's swaps step aside
    inside the compiled region, so their Triton calls (which need a GPU) are never reached here.
    """
    m = _modeling()
    if installed("liger-kernel") is None:
        pytest.skip("liger-kernel is not installed (pip install 'glmocr-lf[kernels]')")
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from glmocr_lf.kernels import glm_ocr

    config = m.GlmOcrTextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=16, vocab_size=256,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                 "mrope_section": [2, 3, 3], "partial_rotary_factor": 1.0})
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = m.GlmOcrTextModel(config).train()
    weights = torch.linspace(-1, 1, 64)

    def losses() -> list[float]:
        out = []
        for length in (37, 50, 61, 19):
            ids = torch.randint(0, 256, (3, length), generator=torch.Generator().manual_seed(length))
            mask = torch.ones(3, length, dtype=torch.long)
            mask[0, : length // 3] = 0  # left padding: a 4-D mask, as LLaMA-Factory's batches have
            hidden = model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            loss = (hidden.float() * weights).sum(-1).pow(2).mean()
            loss.backward()
            out.append(loss.item())
        return out

    eager = losses()
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(glm_ocr, "COMPILE_BACKEND", "aot_eager")
    glm_ocr.apply(m, ["rms_norm", "swiglu", "rope", "compile"])
    try:
        compiled = losses()
    finally:
        glm_ocr.restore(m)
        torch._dynamo.reset()
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert counters["stats"]["unique_graphs"] == 1  # 3 layers x 4 lengths, one graph
    assert sum(counters["graph_break"].values()) == 0
    assert m.GlmOcrTextDecoderLayer.forward.__module__ == m.__name__  # restored


def test_cli_compile_on_without_the_kernels_is_one_error_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert invoke("data", "register", "x", SAMPLE_JSON, "--data-dir", data).exit_code == 0
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        f"dataset: x\ntemplate: glm_ocr\ndataset_dir: {data}\noutput_dir: {tmp_path / 'out'}\nbf16: false\n")
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    result = invoke("train", tmp_path / "c.yaml", "--kernels", "none", "--compile", "on")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --compile on: torch.compile of the decoder layers runs in the "
                                    "kernels' start-up hook, which is off here (kernels: off (--kernels none))")
    assert "Traceback" not in result.stderr

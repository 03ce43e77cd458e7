"""Fused kernels: the patch targets exist, the swap is off on the CPU, and the launch turns it on on a GPU."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import fake_host, put_in_hf_cache, use_host

from glmocr_lf.cli import cli
from glmocr_lf.kernels import DEFAULT_PIECES, ENV_KERNELS, PIECES, hook_dir, parse_pieces
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack, installed
from glmocr_lf.train.kernels import decide
from glmocr_lf.train.plan import LaunchRequest, prepare

H100 = (Gpu(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0)),)
PINNED = Stack({"transformers": "5.6.0"})
LIGER = {"liger-kernel": "0.8.5"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _glm_ocr_in_the_hf_cache() -> None:
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})


def _modeling():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="needs the training stack (make install)")
    pytest.importorskip("transformers", reason="needs the training stack (make install)")
    from transformers.models.glm_ocr import modeling_glm_ocr

    return modeling_glm_ocr


def test_patch_targets_exist_in_installed_transformers() -> None:
    """A transformers that renames GlmOcrRMSNorm & co. must fail here, not silently lose the speed-up."""
    from glmocr_lf.kernels.glm_ocr import TARGETS, missing_targets

    assert missing_targets(_modeling()) == []
    assert set(TARGETS) >= set(DEFAULT_PIECES)


def test_decide_is_off_without_gpu_or_liger_and_on_with_both() -> None:
    off = decide("auto", gpus=(), liger_version="0.8.5", environ={})
    assert (off.on, off.env, off.notes) == (False, {}, ("kernels: off (no CUDA GPU: liger-kernel's Triton kernels need one)",))
    missing = decide("auto", gpus=H100, liger_version=None, environ={})
    assert not missing.on and missing.notes[0].startswith("kernels: off (liger-kernel is not installed")
    assert decide("none", gpus=H100, liger_version="0.8.5", environ={}).notes == ("kernels: off (--kernels none)",)
    on = decide("auto", gpus=H100, liger_version="0.8.5", environ={"PYTHONPATH": "/a"})
    assert on.on and on.pieces == DEFAULT_PIECES
    assert on.env == {ENV_KERNELS: ",".join(DEFAULT_PIECES), "PYTHONPATH": f"{hook_dir()}{os.pathsep}/a"}
    insisted = decide("liger", gpus=H100, liger_version=None, environ={})
    assert not insisted.on and [p.message for p in insisted.problems] == ["--kernels liger: liger-kernel is not installed"]
    for liger in ("0.8.5", None):  # no GPU comes first: with or without liger-kernel, the same refusal
        no_gpu = decide("liger", gpus=(), liger_version=liger, environ={})
        assert (no_gpu.on, no_gpu.env) == (False, {})
        assert [p.message for p in no_gpu.problems] == [
            "--kernels liger: this machine has no CUDA GPU (nvidia-smi lists none); liger-kernel's Triton "
            "kernels need one"]


def test_pieces_from_the_environment() -> None:
    chosen = decide("auto", gpus=H100, liger_version="0.8.5", environ={ENV_KERNELS: "rms_norm,flce"})
    assert chosen.env[ENV_KERNELS] == "rms_norm,flce"
    with pytest.raises(ValueError, match="unknown piece"):
        parse_pieces("rms_norm,fast")


def test_cpu_dry_run_says_kernels_off_and_adds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}")
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        "dataset: x\ntemplate: glm_ocr\ndataset_dir: data\noutput_dir: out\nbf16: false\n")
    monkeypatch.chdir(tmp_path)
    plan = prepare(LaunchRequest(config=tmp_path / "c.yaml", check_data=False), host=fake_host(dists=LIGER))
    assert ENV_KERNELS not in plan.env and "PYTHONPATH" not in plan.env
    assert "kernels: off (no CUDA GPU: liger-kernel's Triton kernels need one)" in plan.notes


def test_a_bad_pieces_variable_on_a_gpu_machine_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: false\ntemplate: glm_ocr\n"
        f"output_dir: {tmp_path / 'out'}\n")
    use_host(monkeypatch, fake_host(H100, dists=LIGER))
    monkeypatch.setenv(ENV_KERNELS, "rms_norm,fast")
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.yaml")], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {ENV_KERNELS}: unknown piece(s) fast; known: {', '.join(PIECES)} (set in the environment)",
        f"Hint: fix or unset {ENV_KERNELS} (e.g. {ENV_KERNELS}={','.join(DEFAULT_PIECES)}), or train with "
        "--kernels none"]


@pytest.mark.parametrize("dists", [LIGER, {}], ids=["liger-installed", "liger-missing"])
def test_kernels_liger_without_a_gpu_is_refused_before_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              dists: dict[str, str]) -> None:
    """Issue 20: it launched and died after the model load ("0 active drivers"); its train.log then
    blocked the retry. Now one error before anything is written or started."""
    from helpers import SAMPLE_JSON

    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        f"dataset: x\ntemplate: glm_ocr\ndataset_dir: {tmp_path / 'data'}\noutput_dir: {out}\nbf16: false\n")
    runner = CliRunner()
    reg = runner.invoke(cli, ["data", "register", "x", str(SAMPLE_JSON), "--data-dir", str(tmp_path / "data")])
    assert reg.exit_code == 0, reg.stderr
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    use_host(monkeypatch, fake_host(dists=dists))
    monkeypatch.setattr("glmocr_lf.runtime.launch.run", _no_child)
    result = runner.invoke(cli, ["train", str(tmp_path / "c.yaml"), "--kernels", "liger"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: --kernels liger: this machine has no CUDA GPU (nvidia-smi lists none); liger-kernel's Triton "
        "kernels need one",
        "Hint: drop --kernels liger (auto turns the kernels off without a GPU)"]
    assert not out.exists() or list(out.iterdir()) == []


def _no_child(*args: object, **kwargs: object) -> int:
    raise AssertionError("a refused plan must not start a process")


def test_cli_dry_run_kernels_none(tmp_path: Path) -> None:
    from helpers import SAMPLE_JSON

    runner = CliRunner()
    (tmp_path / "data").mkdir()
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        f"dataset: x\ntemplate: glm_ocr\ndataset_dir: {tmp_path / 'data'}\noutput_dir: {tmp_path / 'out'}\n"
        "bf16: false\n")
    reg = runner.invoke(cli, ["data", "register", "x", str(SAMPLE_JSON), "--data-dir", str(tmp_path / "data")])
    assert reg.exit_code == 0, reg.stderr
    result = runner.invoke(cli, ["train", str(tmp_path / "c.yaml"), "--kernels", "none", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert "kernels: off (--kernels none)" in result.stderr
    assert ENV_KERNELS not in result.stdout.splitlines()[0]


def test_plan_on_a_gpu_puts_the_hook_first_and_keeps_argv_and_yaml_plain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv(ENV_KERNELS, raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}")
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        f"dataset: x\ntemplate: glm_ocr\ndataset_dir: {tmp_path / 'data'}\noutput_dir: {tmp_path / 'out'}\n"
        "bf16: true\nper_device_train_batch_size: 4\ngradient_accumulation_steps: 4\n")
    host = fake_host(H100, stack=PINNED, dists=LIGER)
    on = prepare(LaunchRequest(config=tmp_path / "c.yaml", check_data=False), host=host)
    off = prepare(LaunchRequest(config=tmp_path / "c.yaml", check_data=False, kernels="none"), host=host)
    assert on.env[ENV_KERNELS] == ",".join(DEFAULT_PIECES)
    assert on.env["PYTHONPATH"] == f"{hook_dir()}{os.pathsep}/elsewhere"
    assert (hook_dir() / "sitecustomize.py").is_file()
    assert {k: v for k, v in on.env.items() if k not in (ENV_KERNELS, "PYTHONPATH")} == off.env
    assert on.argv == off.argv and on.argv[1:] == ["train", str(tmp_path / "out" / "glmocr_lf_train.yaml")]
    assert on.yaml_text.split("\n", 2)[2] == off.yaml_text.split("\n", 2)[2]  # header line holds the time
    assert "liger" not in on.yaml_text
    assert any(n.startswith("kernels: liger-kernel ") for n in on.notes)
    assert f"{ENV_KERNELS}={','.join(DEFAULT_PIECES)}" in on.shell_line()


def test_hook_patches_glm_ocr_on_import_in_a_child_process() -> None:
    _modeling()
    if installed("liger-kernel") is None:
        pytest.skip("liger-kernel is not installed (pip install 'glmocr-lf[kernels]')")
    code = ("from transformers.models.glm_ocr import modeling_glm_ocr as m\n"
            "print(m.GlmOcrRMSNorm.forward.__module__, m.apply_rotary_pos_emb.__module__,"
            " m.GlmOcrTextMLP.forward.__module__)\n")
    env = {**os.environ, ENV_KERNELS: ",".join(DEFAULT_PIECES),
           "PYTHONPATH": os.pathsep.join([str(hook_dir()), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["glmocr_lf.kernels.glm_ocr"] * 3
    assert ("kernels: swapped in transformers.models.glm_ocr.modeling_glm_ocr: " + ", ".join(DEFAULT_PIECES)) \
        in proc.stderr


def test_text_rope_on_deinterleaved_heads_gives_the_same_attention_scores() -> None:
    """GLM rotates interleaved pairs; liger rotates halves. Same q·k after de-interleaving q and k."""
    m = _modeling()
    import torch

    from glmocr_lf.kernels.glm_ocr import deinterleave

    torch.manual_seed(0)
    b, s, d = 2, 7, 8
    q = torch.randn(b, s, 4, d).transpose(1, 2)
    k = torch.randn(b, s, 2, d).transpose(1, 2)
    ang = torch.rand(b, s, d // 2) * 10
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
    q_ref, k_ref = m.apply_rotary_pos_emb(q, k, cos, sin)

    def half_rope(x: torch.Tensor) -> torch.Tensor:  # what liger's kernel computes
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos.unsqueeze(1) + torch.cat((-x2, x1), -1) * sin.unsqueeze(1)

    q_ours, k_ours = half_rope(deinterleave(q)), half_rope(deinterleave(k))
    ref = q_ref @ k_ref.repeat_interleave(2, dim=1).transpose(-1, -2)
    ours = q_ours @ k_ours.repeat_interleave(2, dim=1).transpose(-1, -2)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(deinterleave(q)[..., : d // 2], q[..., 0::2])


def test_vision_attention_in_one_varlen_call_equals_the_per_image_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The varlen path's plumbing (packing, cu_seqlens, one max-length sync per forward) on the CPU.

    torch's varlen_attn is FlashAttention (CUDA only): here it is stood in for by exact per-sequence
    attention, and the CUDA gate is opened, so the test proves what our forward feeds it and does
    with its output; bench/kernels_check.py ops checks the real kernel against float64 on a GPU.
    """
    m = _modeling()
    import torch

    from glmocr_lf.kernels import glm_ocr

    calls: list[tuple[int, int]] = []

    def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k):  # type: ignore[no-untyped-def]
        assert q.shape == k.shape == v.shape and q.dim() == 3 and cu_q.dtype == torch.int32
        calls.append((max_q, max_k))
        bounds = cu_q.tolist()
        outs = [torch.nn.functional.scaled_dot_product_attention(
            *(t[a:b].transpose(0, 1) for t in (q, k, v))).transpose(0, 1) for a, b in itertools.pairwise(bounds)]
        return torch.cat(outs)

    torch.manual_seed(0)
    config = m.GlmOcrVisionConfig(hidden_size=64, num_heads=4, depth=1, attention_bias=True)
    config._attn_implementation = "sdpa"
    attn = m.GlmOcrVisionAttention(config).eval()
    lengths = [16, 9, 25, 4]
    cu = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    hidden = torch.randn(sum(lengths), 64)
    ang = torch.rand(sum(lengths), 8) * 10
    emb = torch.cat((ang, ang), -1)
    position = (emb.cos(), emb.sin())
    with torch.no_grad():
        ref = attn(hidden, cu, position_embeddings=position)
        monkeypatch.setattr(glm_ocr, "_varlen", lambda: reference_varlen)  # bound when the patch is applied
        glm_ocr.apply(m, ["vision_attn"])
        try:
            assert glm_ocr._varlen_applies(attn, hidden, position, False) is False  # CPU: the original path
            monkeypatch.setattr(glm_ocr, "_varlen_applies", lambda *a: True)
            outs = [attn(hidden, cu, position_embeddings=position) for _ in range(3)]  # three layers, one cu
        finally:
            glm_ocr.restore(m)
    for out in outs:
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert calls == [(25, 25)] * 3
    assert cu._glmocr_lf_max == 25  # computed once, kept on the tensor every layer receives


def test_memory_model_with_kernels_matches_h200_measurements() -> None:
    """With kernels on, estimates stay above what was measured (docs/benchmarks.md), within 25%."""
    from glmocr_lf.config.presets import preset
    from glmocr_lf.train.fit import estimate_peak_gib

    lora, full = preset("lora"), preset("full")
    measured = [  # (cfg, micro-batch, checkpointing, padded tokens, peak reserved GiB), one H200, kernels on
        (lora, 16, False, 1352, 29.9), (full, 8, False, 1352, 25.3), (full, 4, False, 1352, 19.6),
        (full, 4, False, 1336, 20.38),  # issue 20: a whole epoch in random order, --memory-budget 24
    ]
    for cfg, micro, ckpt, tokens, reserved in measured:
        estimate = estimate_peak_gib(cfg, micro, ckpt, tokens, kernels=True)
        assert reserved <= estimate <= reserved * 1.25, (micro, ckpt, estimate, reserved)
    # checkpointing with kernels: one measurement (LoRA 4x4, 3.2 GiB); the estimate stays conservative
    assert estimate_peak_gib(lora, 4, True, 1352, kernels=True) >= 3.2


def test_memory_budgets_with_kernels_choose_what_was_measured() -> None:
    """On the benchmark data (the data check counts 979 tokens) the fit picks the runs measured in budget."""
    from glmocr_lf.config.presets import preset
    from glmocr_lf.train.fit import choose, usable_memory_gib

    lora = choose(preset("lora"), 16, usable_memory_gib((), 8.0), 979, None, kernels=True)
    full = choose(preset("full"), 8, usable_memory_gib((), 24.0), 979, None, kernels=True)
    assert lora is not None and (lora.micro_batch, lora.checkpointing) == (4, True)  # reserved 3.2 GiB
    assert full is not None and (full.micro_batch, full.checkpointing) == (4, False)  # reserved 19.6 GiB
    plain = choose(preset("full"), 8, usable_memory_gib((), 24.0), 979, None, kernels=False)
    assert plain is not None and (plain.micro_batch, plain.checkpointing) == (8, True)  # 4x2 reserved 24.5


def test_vision_positions_from_one_host_copy_are_identical() -> None:
    """rot_pos_emb from `grid_thw.tolist()` gives exactly transformers' positions and rotary table."""
    m = _modeling()
    import torch

    from glmocr_lf.kernels import glm_ocr

    config = m.GlmOcrVisionConfig(hidden_size=64, num_heads=4, depth=1, spatial_merge_size=2)
    vision = m.GlmOcrVisionModel(config)
    grid = torch.tensor([[1, 4, 6], [1, 8, 2], [2, 2, 4]])
    ref_emb, ref_pos = vision.rot_pos_emb(grid)
    glm_ocr.apply(m, ["vision_positions"])
    try:
        emb, pos = vision.rot_pos_emb(grid)
    finally:
        glm_ocr.restore(m)
    assert torch.equal(pos, ref_pos) and torch.equal(emb, ref_emb)
    assert pos.shape == (4 * 6 + 8 * 2 + 2 * 2 * 4, 2)


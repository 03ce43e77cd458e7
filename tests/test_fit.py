"""fit_to_hardware: the fastest settings that fit, never a different effective batch or learning rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import fake_host

from glmocr_lf.config.presets import preset
from glmocr_lf.runtime.launch import Topology
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.train.context import LaunchRequest, PlanContext
from glmocr_lf.train.fit import (
    CONTEXT_GIB,
    estimate_peak_gib,
    fit_to_hardware,
    sample_tokens,
    tokenized_cache_dir,
)

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
RTX_8GB = Gpu(0, "RTX 8GB", 8192, (8, 6))
NO_ENV: dict[str, str] = {"HOME": "/home/u"}


def context(gpus: tuple[Gpu, ...] = (H100,), budget: float | None = None, processes: int = 1,
            env: dict[str, str] | None = None, nodes: int = 1) -> PlanContext:
    """The plan's context on a 16-CPU host with `gpus`: `processes` over `nodes`."""
    topology = Topology(nproc=processes // nodes, nnodes=nodes, master_addr="node0" if nodes > 1 else None)
    request = LaunchRequest(config=Path("c.yaml"), topology=topology, memory_budget_gib=budget)
    return PlanContext(request, fake_host(gpus, cpus=16), NO_ENV if env is None else env)


def run(method: str, *, gpus: tuple[Gpu, ...] = (H100,), budget: float | None = None,
        processes: int = 1, env: dict[str, str] | None = None, **overrides: Any) -> tuple[dict[str, Any], Any]:
    cfg = preset(method, overrides=overrides or None)  # type: ignore[arg-type]
    before = cfg.model_copy(deep=True)
    result = fit_to_hardware(cfg, context(gpus, budget, processes, env))
    assert cfg == before, "fit must not modify its input"
    return {**cfg.flat(), **result.values}, result


def effective(values: dict[str, Any], processes: int = 1) -> int:
    return int(values["per_device_train_batch_size"]) * int(values["gradient_accumulation_steps"]) * processes


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("budget", [None, 8.0, 12.0, 24.0, 40.0])
def test_effective_batch_and_learning_rate_never_change(method: str, budget: float | None) -> None:
    start = preset(method).flat()  # type: ignore[arg-type]
    final, _ = run(method, budget=budget)
    assert effective(final) == effective(start)
    assert final["learning_rate"] == start["learning_rate"]


def test_h100_lora_one_micro_batch_no_checkpointing() -> None:
    final, result = run("lora")
    assert (final["per_device_train_batch_size"], final["gradient_accumulation_steps"]) == (16, 1)
    assert final["disable_gradient_checkpointing"] is True
    assert final["dataloader_persistent_workers"] is True
    assert result.env == {"OMP_NUM_THREADS": "1", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert any(r.startswith("micro-batch 4 x 4 accumulation -> 16 x 1") for r in result.reasons)


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("budget", [None, 8.0, 24.0])
def test_sample_order_is_never_chosen(method: str, budget: float | None) -> None:
    """Issue 20: length grouping made full fine-tuning 58% worse per epoch; the order is the user's."""
    final, result = run(method, budget=budget)
    assert "train_sampling_strategy" not in result.values
    assert "train_sampling_strategy" not in final
    assert not any("sampling" in r for r in result.reasons)
    for strategy in ("group_by_length", "random", "sequential"):
        kept, result = run(method, budget=budget, train_sampling_strategy=strategy)
        assert kept["train_sampling_strategy"] == strategy and "train_sampling_strategy" not in result.values


def test_nan_filter_sync_off_on_a_gpu_unless_the_config_says() -> None:
    final, result = run("lora")
    assert final["logging_nan_inf_filter"] is False
    assert any(r.startswith("logging_nan_inf_filter: false (") for r in result.reasons)
    kept, result = run("lora", logging_nan_inf_filter=True)
    assert kept["logging_nan_inf_filter"] is True and "logging_nan_inf_filter" not in result.values
    cpu, result = run("lora", gpus=())
    assert "logging_nan_inf_filter" not in cpu and "logging_nan_inf_filter" not in result.values


def test_h100_full_one_micro_batch_no_checkpointing() -> None:
    final, _ = run("full")
    assert (final["per_device_train_batch_size"], final["gradient_accumulation_steps"]) == (8, 1)
    assert final["disable_gradient_checkpointing"] is True


def test_budget_8_lora_checkpoints_and_stays_under_budget() -> None:
    final, result = run("lora", budget=8.0)
    assert final["disable_gradient_checkpointing"] is False
    cfg = preset("lora")
    peak = estimate_peak_gib(cfg, final["per_device_train_batch_size"], True, sample_tokens(cfg))
    assert peak + CONTEXT_GIB <= 8.0
    assert any("needed to fit --memory-budget 8 GiB" in r for r in result.reasons)


def test_budget_24_full_checkpoints_large_micro_batch() -> None:
    final, _ = run("full", budget=24.0)
    assert final["disable_gradient_checkpointing"] is False
    assert final["per_device_train_batch_size"] == 8


def test_small_card_read_from_the_gpu() -> None:
    final, _ = run("lora", gpus=(RTX_8GB,))
    assert final["disable_gradient_checkpointing"] is False
    assert effective(final) == 16


def test_memory_model_matches_h100_measurements() -> None:
    """Estimates stay above what was measured (docs/benchmarks.md), within 25%."""
    lora, full = preset("lora"), preset("full")
    measured = [  # (cfg, micro-batch, checkpointing, padded tokens, peak reserved GiB)
        (lora, 16, False, 1352, 52.2), (lora, 4, True, 1336, 6.9), (lora, 2, True, 1336, 4.7),
        (full, 8, False, 1336, 37.1), (full, 8, True, 1312, 19.4),
    ]
    for cfg, micro, ckpt, tokens, reserved in measured:
        estimate = estimate_peak_gib(cfg, micro, ckpt, tokens)
        assert reserved <= estimate <= reserved * 1.25, (micro, ckpt, estimate, reserved)


def test_explicit_checkpointing_choice_is_kept() -> None:
    final, result = run("lora", disable_gradient_checkpointing=False)
    assert final["disable_gradient_checkpointing"] is False
    assert not any(r.startswith("gradient checkpointing") for r in result.reasons)
    assert final["per_device_train_batch_size"] == 16  # still fits with checkpointing on


def test_impossible_budget_changes_nothing_and_says_why() -> None:
    final, result = run("full", budget=6.0)
    assert (final["per_device_train_batch_size"], final["gradient_accumulation_steps"]) == (4, 2)
    assert any("may not be enough" in r for r in result.reasons)


def test_cpu_only_touches_workers_alone() -> None:
    _, result = run("lora", gpus=())
    assert result.env == {}
    assert set(result.values) <= {"preprocessing_num_workers", "dataloader_num_workers"}


def test_workers_capped_per_process() -> None:
    final, _ = run("lora", processes=4)
    assert final["preprocessing_num_workers"] == 4
    assert final["dataloader_num_workers"] == 4


def test_user_environment_wins() -> None:
    _, result = run("lora", env={"OMP_NUM_THREADS": "8", "PYTORCH_CUDA_ALLOC_CONF": "", "HOME": "/h"})
    assert result.env == {}


def test_tokenized_cache_keyed_by_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"ocr": {"file_name": "ocr.json", "formatting": "sharegpt"}}))
    (data / "ocr.json").write_text("[]")
    values = {"dataset": "ocr", "dataset_dir": str(data), "cutoff_len": 2048}
    env = {"GLMOCR_LF_CACHE_DIR": str(tmp_path / "cache")}  # the documented variable: README § Install
    first = tokenized_cache_dir(values, env)
    assert first is not None and first.parent == tmp_path / "cache" / "tokenized"
    assert tokenized_cache_dir(values, env) == first
    assert tokenized_cache_dir({**values, "cutoff_len": 1024}, env) != first
    (data / "ocr.json").write_text("[ ]")
    assert tokenized_cache_dir(values, env) != first
    assert tokenized_cache_dir({**values, "dataset": "missing"}, env) is None


def test_no_tokenized_cache_across_nodes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"ocr": {"file_name": "ocr.json", "formatting": "sharegpt"}}))
    (data / "ocr.json").write_text("[]")
    cfg = preset("lora", dataset="ocr", overrides={"dataset_dir": str(data)})
    one = fit_to_hardware(cfg, context())
    two = fit_to_hardware(cfg, context(processes=2, nodes=2))
    assert "tokenized_path" in one.values
    assert "tokenized_path" not in two.values

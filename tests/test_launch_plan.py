"""Launch plans (argv + env) for every topology, resume policy and pre-launch refusals."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import SAMPLE_JSON, Invoke, fake_host, put_in_hf_cache

from glmocr_lf.cli import cli
from glmocr_lf.runtime import launch
from glmocr_lf.runtime.errors import ConfigError, GlmocrLfError, LaunchError, NothingToDo
from glmocr_lf.runtime.host import executable
from glmocr_lf.runtime.launch import Topology
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack
from glmocr_lf.train.plan import LaunchPlan, LaunchRequest, prepare
from glmocr_lf.train.run import TrainerLog, summarise

H100 = tuple(Gpu(i, "NVIDIA H100 80GB HBM3", 81559, (9, 0)) for i in range(4))
T4 = (Gpu(0, "Tesla T4", 15360, (7, 5)),)
PINNED = Stack({"transformers": "5.6.0"})


def env_for(topology: Topology, visible: int = 4) -> dict[str, str]:
    return {**launch.common_overlay(PINNED, "hf").env, **launch.torchrun_overlay(topology, visible).env}


def test_one_gpu_runs_in_process() -> None:
    assert env_for(Topology(), visible=1) == {}


def test_nproc_4_uses_torchrun() -> None:
    assert env_for(Topology(nproc=4)) == {
        "FORCE_TORCHRUN": "1", "NNODES": "1", "NODE_RANK": "0", "NPROC_PER_NODE": "4",
    }


def test_deepspeed_forces_torchrun_even_on_one_gpu() -> None:
    assert env_for(Topology(deepspeed="z2"), visible=1) == {
        "FORCE_TORCHRUN": "1", "NNODES": "1", "NODE_RANK": "0", "NPROC_PER_NODE": "1",
    }


def test_second_node_gets_fixed_port_and_master() -> None:
    assert env_for(Topology(nnodes=2, node_rank=1, master_addr="10.0.0.1"), visible=8) == {
        "FORCE_TORCHRUN": "1", "NNODES": "2", "NODE_RANK": "1", "NPROC_PER_NODE": "8",
        "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
    }


def test_gpu_list_sets_visible_devices_and_process_count() -> None:
    assert env_for(Topology(gpus=(2, 3))) == {
        "CUDA_VISIBLE_DEVICES": "2,3", "FORCE_TORCHRUN": "1", "NNODES": "1", "NODE_RANK": "0",
        "NPROC_PER_NODE": "2",
    }


def test_single_gpu_from_list_stays_in_process() -> None:
    assert env_for(Topology(gpus=(1,))) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_modelscope_hub() -> None:
    assert launch.common_overlay(PINNED, "modelscope").env == {"USE_MODELSCOPE_HUB": "1"}


@pytest.fixture(autouse=True)
def _glm_ocr_in_the_hf_cache() -> None:
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}")
    (tmp_path / "c.yaml").write_text(
        "model_name_or_path: zai-org/GLM-OCR\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        "dataset: x\ntemplate: glm_ocr\ndataset_dir: data\noutput_dir: out\nbf16: true\n"
        "per_device_train_batch_size: 4\ngradient_accumulation_steps: 4\n")
    return tmp_path


def plan_for(project: Path, gpus: tuple[Gpu, ...] = H100, host: dict[str, Any] | None = None,
             **kwargs: Any) -> LaunchPlan:
    request = LaunchRequest(config=project / "c.yaml", check_data=False, **kwargs)
    return prepare(request, host=fake_host(gpus, stack=PINNED, **(host or {})))


def only_problem(plan: LaunchPlan) -> GlmocrLfError:
    assert len(plan.problems) == 1, [p.message for p in plan.problems]
    return plan.problems[0]


def test_plan_argv_and_absolute_paths(project: Path) -> None:
    plan = plan_for(project, topology=Topology(gpus=(0,)))
    assert plan.argv[1:] == ["train", str(project / "out" / "glmocr_lf_train.yaml")]
    assert Path(plan.argv[0]).name == "llamafactory-cli"
    assert f"dataset_dir: {project / 'data'}" in plan.yaml_text
    assert f"output_dir: {project / 'out'}" in plan.yaml_text
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert plan.shell_line().startswith(f"cd {project} && CUDA_VISIBLE_DEVICES=0 ")


def test_deepspeed_preset_is_a_packaged_file(project: Path) -> None:
    plan = plan_for(project, topology=Topology(deepspeed="z3-offload"))
    line = next(x for x in plan.yaml_text.splitlines() if x.startswith("deepspeed: "))
    path = Path(line.split(": ", 1)[1])
    assert path.name == "ds_z3_offload_config.json"
    assert json.loads(path.read_text())["zero_optimization"]["stage"] == 3


def test_bf16_without_bf16_gpu_is_an_error_at_launch(project: Path) -> None:
    assert "train.bf16" in only_problem(plan_for(project, gpus=T4)).message


def test_whitespace_paths_refused_only_where_torchrun_splits_them(project: Path) -> None:
    err = only_problem(plan_for(project, overrides={"output_dir": str(project / "my run")}))  # 4 GPUs: torchrun
    assert isinstance(err, ConfigError) and err.problems[0].message == (
        f"'{project / 'my run'}' contains whitespace; a multi-process launch (torchrun) splits arguments "
        "on whitespace: use a path without spaces, or train in one process")
    one = plan_for(project, gpus=H100[:1], overrides={"output_dir": str(project / "my run")})
    assert one.output_dir == project / "my run" and one.problems == []
    spaced_config = project / "my configs" / "c.yaml"  # never given to LLaMA-Factory: never refused
    spaced_config.parent.mkdir()
    spaced_config.write_text((project / "c.yaml").read_text())
    assert prepare(LaunchRequest(config=spaced_config, check_data=False), host=fake_host(H100)).problems == []


def test_init_warns_about_a_path_with_whitespace(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("init", "my project")
    assert result.exit_code == 0
    assert (f"{tmp_path / 'my project'} contains whitespace: one-process training and export work, but a "
            "multi-process launch (torchrun: several GPUs, DeepSpeed, several nodes) splits it and is "
            "refused; a path without spaces avoids that") in result.stderr.splitlines()


def test_multinode_needs_master_addr(project: Path) -> None:
    err = only_problem(plan_for(project, topology=Topology(nnodes=2, node_rank=1)))
    assert "--master-addr: multi-node training needs the address of node 0" in err.message


def test_non_empty_output_dir_needs_a_policy(project: Path) -> None:
    for step in (2, 10):
        (project / "out" / f"checkpoint-{step}").mkdir(parents=True)
        (project / "out" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    err = only_problem(plan_for(project))
    assert err.message == f"{project / 'out'} already holds a run (checkpoint checkpoint-10)"
    assert err.hint == "pass --resume to continue from its last checkpoint, or --fresh to start over"
    resumed = plan_for(project, resume="resume")
    assert f"resume_from_checkpoint: {project / 'out' / 'checkpoint-10'}" in resumed.yaml_text
    assert "overwrite_output_dir: false" in resumed.yaml_text
    fresh = plan_for(project, resume="fresh")
    assert "overwrite_output_dir: true" in fresh.yaml_text
    assert sorted(p.name for p in fresh.removals) == ["checkpoint-10", "checkpoint-2"]


def test_resume_without_checkpoint_is_an_error(project: Path) -> None:
    assert only_problem(plan_for(project, resume="resume")).message == (
        f"{project / 'out'}: no complete checkpoint-N to resume from")


def test_resume_skips_a_checkpoint_cut_short(project: Path) -> None:
    (project / "out" / "checkpoint-8").mkdir(parents=True)
    (project / "out" / "checkpoint-8" / "trainer_state.json").write_text("{}")
    (project / "out" / "checkpoint-10").mkdir()  # interrupted while saving: no trainer_state.json
    plan = plan_for(project, resume="resume")
    assert plan.resume_from == project / "out" / "checkpoint-8"
    assert "skipping checkpoint-10: incomplete (the run stopped while saving it)" in plan.notes


def test_unregistered_dataset_is_refused_before_launch(project: Path, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["train", str(project / "c.yaml"), "bf16=false", "--dry-run"])
    assert result.exit_code == 1
    assert f"Error: dataset 'x' is not registered in {project / 'data' / 'dataset_info.json'}" in result.stderr


def test_dry_run_prints_plan_and_yaml_and_writes_nothing(project: Path, runner: CliRunner) -> None:
    from helpers import SAMPLE_JSON

    reg = runner.invoke(cli, ["data", "register", "x", str(SAMPLE_JSON), "--data-dir", str(project / "data"),
                              "--force"])
    assert reg.exit_code == 0, reg.stderr
    result = runner.invoke(cli, ["train", str(project / "c.yaml"), "bf16=false", "--nproc", "2", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith(f"cd {project} && FORCE_TORCHRUN=1 NNODES=1 NODE_RANK=0 NPROC_PER_NODE=2 ")
    assert first.endswith(f"llamafactory-cli train {project / 'out' / 'glmocr_lf_train.yaml'}")
    assert "### model" in rest
    assert "dataset x: 10 samples OK, 1 warning(s)" in result.stderr
    assert not (project / "out").exists()
    # bf16 on a machine without a bf16 GPU: the same plan, and the problem; exit 1
    refused = runner.invoke(cli, ["train", str(project / "c.yaml"), "--nproc", "2", "--dry-run"])
    assert refused.exit_code == 1
    assert refused.stdout.splitlines()[0] == first and "bf16: true" in refused.stdout.splitlines()
    assert refused.stderr.splitlines()[-2:] == [
        f"Error: {project / 'c.yaml'}",
        "  train.bf16: this machine has no GPU with bf16 (compute capability >= 8.0); training here would "
        "fail: set bf16: false to train in fp32"]
    assert not (project / "out").exists()


def test_overrides_must_be_key_value(project: Path, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["train", str(project / "c.yaml"), "--", "--max_samples=20"])
    assert result.exit_code == 1
    assert "write overrides as key=value, without leading dashes" in result.stderr


def test_modelscope_needs_its_package(project: Path) -> None:
    err = only_problem(plan_for(project, hub="modelscope"))
    assert isinstance(err, LaunchError) and err.message == "--hub modelscope needs the modelscope package"
    plan = plan_for(project, hub="modelscope", host={"dists": {"modelscope": "1.20.0"}})
    assert plan.env["USE_MODELSCOPE_HUB"] == "1"
    assert "model_name_or_path: ZhipuAI/GLM-OCR" in plan.yaml_text
    assert "model_name_or_path: zai-org/GLM-OCR -> ZhipuAI/GLM-OCR (its ModelScope id)" in plan.notes


def test_cutoff_len_below_image_tokens_is_refused_before_launch(project: Path, runner: CliRunner) -> None:
    from helpers import SAMPLE_JSON

    reg = runner.invoke(cli, ["data", "register", "x", str(SAMPLE_JSON), "--data-dir", str(project / "data")])
    assert reg.exit_code == 0, reg.stderr
    result = runner.invoke(cli, ["train", str(project / "c.yaml"), "cutoff_len=64", "bf16=false"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: dataset x: 10 error(s); training would fail or silently drop samples"
    assert lines[1].startswith(f"  {project / 'data' / 'x.json'}: sample 0: ")
    assert "cutoff_len" in lines[1] and "image" in lines[1]
    assert not (project / "out").exists()


def test_resume_and_fresh_exclude_each_other(project: Path, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["train", str(project / "c.yaml"), "--resume", "--fresh", "--dry-run"])
    assert result.exit_code == 2
    assert "Error: --resume and --fresh exclude each other" in result.stderr


def cpu_plan(project: Path, **kwargs: Any) -> LaunchPlan:
    return plan_for(project, gpus=(), overrides={"bf16": False}, **kwargs)


def test_deepspeed_not_installed_is_refused_before_launch(project: Path) -> None:
    without = {"missing": ("deepspeed",)}
    assert only_problem(plan_for(project, host=without, topology=Topology(deepspeed="z2"))).message.splitlines() == [
        "train options",
        f"  --deepspeed: deepspeed is not installed in this environment ({sys.executable}); pip install "
        "deepspeed, or train without --deepspeed"]
    assert re.search(r"  deepspeed: deepspeed is not installed .* remove deepspeed from the config",
                     only_problem(plan_for(project, host=without, overrides={"deepspeed": "z2.json"})).message)


def test_multi_process_run_needs_torchrun(project: Path) -> None:
    without = {"missing": ("torchrun",)}
    assert "  torchrun: not found beside " in only_problem(plan_for(project, host=without,
                                                                    topology=Topology(nproc=2))).message
    one = plan_for(project, host=without, topology=Topology(gpus=(0,)))  # one process: no torchrun
    assert "PATH" not in one.env and one.problems == []


def test_torchrun_beside_the_interpreter_goes_first_on_path(project: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`.venv/bin/glmocr-lf train --nproc 2` without activating the venv: LLaMA-Factory runs
    `torchrun` by name, so the child's PATH must find the venv's."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("torchrun", "llamafactory-cli"):
        (venv_bin / name).write_text("#!/bin/sh\n")
        (venv_bin / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert executable("llamafactory-cli") == str(venv_bin / "llamafactory-cli")
    beside = {"executables": {"torchrun": executable("torchrun")}}
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    plan = plan_for(project, host=beside, topology=Topology(nproc=2))
    assert plan.env["PATH"] == f"{venv_bin}{os.pathsep}/usr/bin:/bin"
    assert f"PATH starts with {venv_bin}: LLaMA-Factory runs torchrun by name" in plan.notes
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin")  # activated: nothing to add
    assert "PATH" not in plan_for(project, host=beside, topology=Topology(nproc=2)).env


def test_gpus_on_a_machine_without_gpu_is_refused(project: Path) -> None:
    assert only_problem(cpu_plan(project, topology=Topology(gpus=(0, 1)))).message.splitlines() == [
        "train options",
        "  --gpus: 0,1: this machine has no NVIDIA GPU (nvidia-smi lists none); drop --gpus to train on the CPU"]
    assert "--gpus: 5: no GPU 5 on this machine (it has 0, 1, 2, 3)" in only_problem(
        plan_for(project, topology=Topology(gpus=(5,)))).message


def test_memory_budget_on_a_cpu_machine_warns_and_leaves_threads_alone(project: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = cpu_plan(project, memory_budget_gib=16.0)
    assert "OMP_NUM_THREADS" not in plan.env
    assert plan.warnings == ["--memory-budget 16 GiB ignored: this machine has no NVIDIA GPU and the budget "
                             "sizes batches for GPU memory (the CPU run keeps its settings)"]
    assert plan_for(project, memory_budget_gib=16.0).env["OMP_NUM_THREADS"] == "1"  # on a GPU machine: as before


@pytest.mark.parametrize("budget", [None, 8.0])
def test_default_plan_sets_no_sampling_strategy(project: Path, budget: float | None) -> None:
    """Issue 20: the fit chose group_by_length on GPUs; a default never changes what is learned."""
    plan = plan_for(project, topology=Topology(gpus=(0,)), memory_budget_gib=budget)
    assert "disable_gradient_checkpointing:" in plan.yaml_text  # the fit ran
    assert "train_sampling_strategy" not in plan.yaml_text
    assert not any("sampling" in note for note in plan.notes)
    kept = plan_for(project, topology=Topology(gpus=(0,)), memory_budget_gib=budget,
                    overrides={"train_sampling_strategy": "group_by_length"})
    assert "train_sampling_strategy: group_by_length" in kept.yaml_text


# -- output_dir: which node checks, cleans and writes it; --fresh, --resume of a finished run,
# --resume-if-any; the worker split per node; the summary after a resume (issue 24 §1-3, §5, §6, §12)
# What a finished LoRA run leaves in output_dir (besides the checkpoints).
RUN_FILES = ("adapter_model.safetensors", "adapter_config.json", "all_results.json", "train_results.json",
             "trainer_state.json", "trainer_log.jsonl", "training_loss.png", "train.log", "glmocr_lf_run.json",
             "glmocr_lf_train.yaml", "README.md")


def node(rank: int, **kwargs: Any) -> Topology:
    return Topology(nnodes=2, node_rank=rank, master_addr="10.0.0.1", **kwargs)


def finished_run(out: Path, *, step: int = 4, max_steps: int = 4) -> None:
    """The files of a LoRA run that ended at `step` of `max_steps`, with a checkpoint there."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (out / name).write_text('{"status": "finished"}' if name == "glmocr_lf_run.json" else "old")
    (out / "runs").mkdir()
    checkpoint = out / f"checkpoint-{step}"
    checkpoint.mkdir()
    state = {"global_step": step, "max_steps": max_steps, "num_train_epochs": 3}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))


def test_only_node_0_refuses_an_output_dir_that_holds_a_run(project: Path) -> None:
    finished_run(project / "out")
    assert only_problem(plan_for(project, topology=node(0))).message == (
        f"{project / 'out'} already holds a run (checkpoint checkpoint-4)")
    plan = plan_for(project, topology=node(1))  # node 1 leaves the decision to node 0
    assert plan.problems == [] and plan.removals == [] and plan.resume_from is None
    assert plan.yaml_path == project / "out" / "glmocr_lf_train.node1.yaml"
    assert plan.log_path == project / "out" / "train.node1.log"
    assert plan_for(project, topology=node(0), resume="fresh").log_path == project / "out" / "train.log"


def test_node_0_does_not_count_the_files_of_a_node_that_started_first(project: Path) -> None:
    out = project / "out"
    out.mkdir()
    (out / "train.node1.log").write_text("$ node 1\n")
    (out / "glmocr_lf_train.node1.yaml").write_text("stage: sft\n")
    plan = plan_for(project, topology=node(0))
    assert plan.problems == [] and plan.removals == [] and plan.yaml_path == out / "glmocr_lf_train.yaml"


def test_fresh_on_node_0_removes_every_file_of_the_earlier_run_but_other_nodes_own(project: Path) -> None:
    out = project / "out"
    finished_run(out)
    (out / "train.node1.log").write_text("$ node 1, already running\n")
    plan = plan_for(project, topology=node(0), resume="fresh")
    assert sorted(p.name for p in plan.removals) == sorted([*RUN_FILES, "runs", "checkpoint-4"])
    assert (f"--fresh: removing {len(RUN_FILES) + 2} entries of the earlier run in {out} "
            "(README.md, adapter_config.json, adapter_model.safetensors, all_results.json, ...)") in plan.notes
    assert plan_for(project, topology=node(1), resume="fresh").removals == []
    assert plan_for(project, resume="fresh").removals == plan.removals  # one node: the same


def test_fresh_refuses_to_empty_a_folder_no_run_wrote(project: Path) -> None:
    (project / "out").mkdir()
    for name in ("notes.txt", "scans", "configs"):
        (project / "out" / name).write_text("mine")
    err = only_problem(plan_for(project, resume="fresh"))
    assert err.message == (f"{project / 'out'}: holds files no training run wrote (configs, notes.txt, "
                                 "scans); --fresh removes everything in output_dir")
    assert err.hint == "set output_dir to a folder of its own"


def test_resume_of_a_finished_run_has_nothing_to_do(project: Path) -> None:
    finished_run(project / "out", step=4, max_steps=4)
    with pytest.raises(NothingToDo) as done:
        plan_for(project, resume="resume")
    assert done.value.message == f"{project / 'out' / 'checkpoint-4'} is step 4 of 4: the run finished; nothing to resume"
    assert done.value.hint == "pass max_steps=N beyond it to train further, or --fresh to start over"
    longer = plan_for(project, resume="resume", overrides={"max_steps": 8})
    assert longer.resume_from == project / "out" / "checkpoint-4"
    more_epochs = plan_for(project, resume="resume", overrides={"num_train_epochs": 6.0})
    assert more_epochs.resume_from == project / "out" / "checkpoint-4"


def test_train_resume_of_a_finished_run_changes_nothing(project: Path, invoke: Invoke) -> None:
    assert invoke("data", "register", "x", SAMPLE_JSON, "--data-dir", project / "data", "--force").exit_code == 0
    out = project / "out"
    finished_run(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = invoke("train", project / "c.yaml", "--resume", "bf16=false")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"Nothing to do: {out / 'checkpoint-4'} is step 4 of 4: the run finished; nothing to resume",
        "Hint: pass max_steps=N beyond it to train further, or --fresh to start over"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_if_any_resumes_a_checkpoint_else_starts_fresh(project: Path) -> None:
    out = project / "out"
    finished_run(out, step=2, max_steps=4)
    resumed = plan_for(project, resume="auto")
    assert resumed.resume_from == out / "checkpoint-2" and resumed.removals == []
    assert f"--resume-if-any: a complete checkpoint in {out}" in resumed.notes
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # cut short: no complete checkpoint
    fresh = plan_for(project, resume="auto")
    assert fresh.resume_from is None and out / "checkpoint-2" in fresh.removals
    assert f"--resume-if-any: no complete checkpoint in {out}" in fresh.notes


def test_the_three_resume_options_exclude_each_other(project: Path, invoke: Invoke) -> None:
    result = invoke("train", project / "c.yaml", "--fresh", "--resume-if-any", "--dry-run")
    assert result.exit_code == 2
    assert "Error: --fresh and --resume-if-any exclude each other" in result.stderr


def test_workers_are_divided_by_this_nodes_processes(project: Path) -> None:
    request = LaunchRequest(config=project / "c.yaml", check_data=False,
                            overrides={"bf16": False, "preprocessing_num_workers": 16}, topology=node(1, nproc=1))
    plan = prepare(request, host=fake_host((), stack=PINNED, cpus=2))
    assert "preprocessing_num_workers: 16 -> 2 (2 CPUs for 1 process(es) on this node)" in plan.notes
    assert "preprocessing_num_workers: 2" in plan.yaml_text


def trainer_log(out: Path, entries: list[dict[str, Any]]) -> TrainerLog:
    out.mkdir(parents=True, exist_ok=True)
    (out / "trainer_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    log = TrainerLog(out / "trainer_log.jsonl")
    log.poll()
    return log


def test_after_a_resume_the_mean_loss_is_the_logged_steps_after_it(tmp_path: Path) -> None:
    # transformers' train_loss after a resume: its loss sum over every step / the total (the steps
    # before the resume count as 0), and samples/s: the whole run's samples over the resumed time
    (tmp_path / "all_results.json").write_text(json.dumps(
        {"train_loss": 2.0, "train_samples_per_second": 100.0, "train_runtime": 5.0}))
    log = trainer_log(tmp_path, [{"current_steps": s, "total_steps": 10, "loss": float(s)} for s in range(7, 11)])
    summary = summarise(tmp_path, log, 0, resumed_at=6)
    assert summary.train_loss == pytest.approx((7 + 8 + 9 + 10) / 4)
    assert summary.samples_per_second == pytest.approx(100.0 * 4 / 10)
    assert summary.final_loss == 10.0


def test_the_summary_says_why_a_figure_is_missing(tmp_path: Path, invoke: Invoke) -> None:
    log = trainer_log(tmp_path, [{"current_steps": 3, "total_steps": 3}])  # the closing entry: no loss
    summary = summarise(tmp_path, log, 0, values={"logging_steps": 10, "plot_loss": True})
    assert summary.no_loss_reason == "no step was logged: logging_steps 10 > the run's 3 steps"
    assert summary.no_plot_reason == summary.no_loss_reason
    assert summarise(tmp_path, log, 0, values={"plot_loss": False}).no_plot_reason == "plot_loss is off"

"""`slurm/train.sbatch` from `glmocr-lf init`: it parses, and under fake `srun`/`scontrol`/`sbatch`
(real scripts that record their argv and environment) it starts the right `glmocr-lf train` per node."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmocr_lf.cli import cli

BASH = shutil.which("bash")
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Each fake appends one JSON line {"argv": [...], "env": {...}} to $RECORD, then acts its part:
# srun runs its command once per node of the allocation, as SLURM would on each node.
RECORD = '''import json, os, sys
KEYS = ("SLURM_NODEID", "SLURM_NNODES", "SLURMD_NODENAME", "MASTER_ADDR", "MASTER_PORT", "SRUN_CPUS_PER_TASK")
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps({"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                        "env": {k: os.environ[k] for k in KEYS if k in os.environ}}) + "\\n")
'''
FAKES = {
    "srun": RECORD + '''
import subprocess
args = sys.argv[1:]
command = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]  # srun's options come first
hosts = ["gpu-a01", "gpu-a02", "gpu-a03", "gpu-a04"]
for node in range(int(os.environ["SLURM_NNODES"])):
    env = {**os.environ, "SLURM_NODEID": str(node), "SLURM_PROCID": str(node), "SLURMD_NODENAME": hosts[node]}
    code = subprocess.run(command, env=env).returncode
    if code:
        sys.exit(code)
''',
    "scontrol": RECORD + '''
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
print("gpu-a01\\ngpu-a02")
''',
    "sbatch": RECORD,
    "glmocr-lf": RECORD,
}


@pytest.fixture
def fakes(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with the fake commands first; the file they record into."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    python = shutil.which("python3") or "python3"
    for name, body in FAKES.items():
        script = bin_dir / name
        script.write_text(f"#!{python}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "MASTER_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", RECORD=str(record), MAKEFLAGS="")
    return env, record


def records(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    result = CliRunner().invoke(cli, ["init", "project"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp_path / "project"


def test_the_template_parses(project: Path) -> None:
    proc = subprocess.run([BASH, "-n", "slurm/train.sbatch"], cwd=project, capture_output=True, text=True)  # type: ignore[list-item]
    assert proc.returncode == 0, proc.stderr


def test_two_nodes_of_four_gpus_get_one_train_each(project: Path, fakes: tuple[dict[str, str], Path]) -> None:
    env, record = fakes
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]", SLURM_GPUS_ON_NODE="4", SLURM_JOB_ID="77")
    proc = subprocess.run([BASH, "slurm/train.sbatch", "configs/full.yaml", "--deepspeed", "z3", "--fresh"],  # type: ignore[list-item]
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "glmocr-lf: 2 nodes x 4 GPUs, rendezvous at gpu-a01:15077\n"  # a port per job
    scontrol, srun, *trains = records(record)
    assert (scontrol["prog"], scontrol["argv"]) == ("scontrol", ["show", "hostnames", "gpu-a[01-02]"])
    assert srun["prog"] == "srun"
    assert srun["argv"][:4] == ["--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash", "-c"]  # type: ignore[index]
    assert [t["prog"] for t in trains] == ["glmocr-lf", "glmocr-lf"]
    for rank, train in enumerate(trains):
        assert train["argv"] == ["train", "configs/full.yaml", "--nnodes", "2", "--node-rank", str(rank),
                                 "--nproc", "4", "--master-addr", "gpu-a01", "--master-port", "15077",
                                 "--deepspeed", "z3", "--fresh"]
        assert train["env"]["SLURMD_NODENAME"] == f"gpu-a0{rank + 1}"  # type: ignore[index]


def test_defaults_and_port_from_the_environment(project: Path, fakes: tuple[dict[str, str], Path]) -> None:
    env, record = fakes
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]", MASTER_PORT="29777")  # no SLURM_GPUS_ON_NODE
    proc = subprocess.run([BASH, "slurm/train.sbatch"], cwd=project, env=env,  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    trains = [r for r in records(record) if r["prog"] == "glmocr-lf"]
    assert [t["argv"] for t in trains] == [
        ["train", "configs/full.yaml", "--nnodes", "2", "--node-rank", str(rank), "--nproc", "4",
         "--master-addr", "gpu-a01", "--master-port", "29777"] for rank in range(2)]


def test_a_failing_node_fails_the_job(project: Path, fakes: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, _ = fakes
    failing = tmp_path / "fakebin" / "glmocr-lf"
    failing.write_text("#!/bin/sh\nexit 3\n")
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]")
    proc = subprocess.run([BASH, "slurm/train.sbatch"], cwd=project, env=env,  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_train_slurm_submits_the_script(project: Path, fakes: tuple[dict[str, str], Path]) -> None:
    env, record = fakes
    proc = subprocess.run([MAKE, "--no-print-directory", "train-slurm", "NNODES=2", "DEEPSPEED=z3",  # type: ignore[list-item]
                           "MASTER_PORT=29600", "ARGS=--fresh num_train_epochs=1"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (sbatch,) = records(record)
    assert sbatch["prog"] == "sbatch"
    assert sbatch["argv"] == ["--nodes=2", "slurm/train.sbatch", "configs/full.yaml", "--deepspeed", "z3",
                              "--fresh", "num_train_epochs=1"]
    assert sbatch["env"] == {"MASTER_PORT": "29600"}


def test_srun_gets_the_cpus_per_task_of_the_job(project: Path, fakes: tuple[dict[str, str], Path]) -> None:
    """Since Slurm 22.05 srun does not inherit sbatch's --cpus-per-task: SRUN_CPUS_PER_TASK carries it."""
    env, record = fakes
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]", SLURM_CPUS_PER_TASK="16")
    proc = subprocess.run([BASH, "slurm/train.sbatch"], cwd=project, env=env,  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    srun = next(r for r in records(record) if r["prog"] == "srun")
    assert srun["env"]["SRUN_CPUS_PER_TASK"] == "16"  # type: ignore[index]


def test_a_requeued_job_resumes_instead_of_starting_over(project: Path, fakes: tuple[dict[str, str], Path]) -> None:
    env, record = fakes
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]", SLURM_RESTART_COUNT="1", MASTER_PORT="29500")
    proc = subprocess.run([BASH, "slurm/train.sbatch", "configs/lora.yaml", "--fresh", "num_train_epochs=1"],  # type: ignore[list-item]
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == "glmocr-lf: requeued (restart 1): continuing from the last checkpoint"
    trains = [r for r in records(record) if r["prog"] == "glmocr-lf"]
    assert [t["argv"][-2:] for t in trains] == [["num_train_epochs=1", "--resume-if-any"]] * 2
    assert all("--fresh" not in t["argv"] for t in trains)  # type: ignore[operator]


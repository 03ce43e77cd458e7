"""End to end: two real nodes on one host (torchrun, gloo, the real llamafactory-cli, the tiny model,
one process per node), as a cluster starts them: in either order, seconds apart, sharing output_dir;
then slurm/train.sbatch itself under fake `srun`/`scontrol` that start the nodes with a gap, and
the same job requeued.

Kept short for CI on the CPU: one project, two trainings of 2 optimizer steps (a requeued job that
resumes mid-run cannot be shown on the CPU: transformers loads the optimizer state of a
multi-process CPU run with map_location "cpu:0", which torch refuses).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import venv_bin

from glmocr_lf.cli import cli

pytestmark = pytest.mark.e2e
pytest.importorskip("llamafactory")

GAP_S = 3.0
CPU = ["bf16=false", "cutoff_len=256", "image_max_pixels=50176", "per_device_train_batch_size=2",
       "gradient_accumulation_steps=1", "preprocessing_num_workers=4", "dataloader_num_workers=0",
       "logging_steps=1", "plot_loss=false", "max_samples=4"]
RUN = Path("saves/glm-ocr/lora/sft")

# srun as SLURM runs a step: the command once per node, here all on this host, node by node in
# FAKE_SRUN_ORDER with FAKE_SRUN_GAP seconds between starts; its exit code is the first failure's.
FAKE_SRUN = '''import os, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["RECORD"], "a") as f:
    f.write(" ".join(args[:3]) + " SRUN_CPUS_PER_TASK=" + os.environ.get("SRUN_CPUS_PER_TASK", "") + "\\n")
command = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]
procs = []
for n, node in enumerate(os.environ["FAKE_SRUN_ORDER"].split(",")):
    if n:
        time.sleep(float(os.environ["FAKE_SRUN_GAP"]))
    procs.append(subprocess.Popen(command, env={**os.environ, "SLURM_NODEID": node, "SLURM_PROCID": node}))
codes = [p.wait(timeout=600) for p in procs]
sys.exit(next((c for c in codes if c), 0))
'''
FAKE_SCONTROL = 'import sys\nassert sys.argv[1:3] == ["show", "hostnames"]\nprint("127.0.0.1\\n127.0.0.1")\n'


def glmocr(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr[-3000:]
    return result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def two_nodes(first: int, args: list[str], env: dict[str, str]) -> dict[int, subprocess.CompletedProcess[str]]:
    """`glmocr-lf train ARGS` as node 0 and node 1 of 2, node `first` started GAP_S seconds before the other."""
    port = str(free_port())
    procs: dict[int, subprocess.Popen[str]] = {}
    for n, rank in enumerate((first, 1 - first)):
        if n:
            time.sleep(GAP_S)
        procs[rank] = subprocess.Popen(
            [venv_bin("glmocr-lf"), "train", "configs/lora.yaml", *args, "--nnodes", "2", "--node-rank", str(rank),
             "--nproc", "1", "--master-addr", "127.0.0.1", "--master-port", port],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = {}
    for rank, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        done[rank] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    for rank, proc_done in done.items():
        assert proc_done.returncode == 0, f"node {rank}:\n{proc_done.stderr[-4000:]}"
    return done


def launch_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("$ ")]


def test_two_nodes_in_either_order_then_a_requeued_sbatch_job(tmp_path: Path, clean_env: dict[str, str]) -> None:
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    tiny = build_tiny_glm_ocr(tmp_path / "tiny")
    glmocr("init", "proj", "--example")
    os.chdir("proj")
    args = [*CPU, f"model_name_or_path={tiny}", "max_steps=2", "save_steps=2"]

    # node 1 first, into an empty output_dir: its own log does not make node 0 see "a run"
    first = two_nodes(1, args, clean_env)
    assert "Training finished" in first[0].stderr
    assert "node 1 of 2 finished; the run's summary and files are node 0's" in first[1].stderr
    assert [line.split(" NODE_RANK=")[1][0] for line in launch_lines(RUN / "train.log")] == ["0"]
    assert [line.split(" NODE_RANK=")[1][0] for line in launch_lines(RUN / "train.node1.log")] == ["1"]
    assert "node rank: 0" in (RUN / "train.log").read_text(encoding="utf-8")  # node 0's own lines
    record = json.loads((RUN / "glmocr_lf_run.json").read_text())
    assert record["status"] == "finished" and "NODE_RANK=0" in record["command"]
    assert record["summary"]["steps"] == 2

    # slurm/train.sbatch with --fresh (every node gets it, as `make train-slurm ARGS=--fresh` gives
    # it): node 0 starts first and alone cleans; node 1 neither removes node 0's open log nor sees
    # the earlier run
    started_before = record["started"]
    time.sleep(1)  # records are stamped to the second
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in clean_env.items() if not k.startswith(("SLURM", "MASTER_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", RECORD=str(tmp_path / "srun.txt"),
               FAKE_SRUN_ORDER="0,1", FAKE_SRUN_GAP=str(GAP_S), GLMOCR_LF=venv_bin("glmocr-lf"),
               SLURM_NNODES="2", SLURM_JOB_NODELIST="node[1-2]", SLURM_JOB_ID="4242", SLURM_GPUS_ON_NODE="1",
               SLURM_CPUS_PER_TASK="2", MASTER_PORT=str(free_port()))
    sbatch = ["bash", "slurm/train.sbatch", "configs/lora.yaml", "--fresh", *args]
    proc = subprocess.run(sbatch, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert (tmp_path / "srun.txt").read_text() == "--ntasks-per-node=1 --kill-on-bad-exit=1 bash SRUN_CPUS_PER_TASK=2\n"
    assert proc.stderr.count("--fresh: removing") == 1  # node 0's
    assert "node 1 of 2 finished; the run's summary and files are node 0's" in proc.stderr
    assert len(launch_lines(RUN / "train.log")) == 1 and "node rank: 0" in (RUN / "train.log").read_text()
    assert len(launch_lines(RUN / "train.node1.log")) == 1
    record = json.loads((RUN / "glmocr_lf_run.json").read_text())
    assert record["status"] == "finished" and record["started"] > started_before
    assert record["summary"]["steps"] == 2

    # the same job requeued (SLURM_RESTART_COUNT=1) with the --fresh it was submitted with: every
    # node resumes instead of starting over, and a finished run has nothing to resume
    env.update(SLURM_RESTART_COUNT="1", MASTER_PORT=str(free_port()))
    proc = subprocess.run(sbatch, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "glmocr-lf: requeued (restart 1): continuing from the last checkpoint" in proc.stderr
    assert proc.stderr.count(f"Nothing to do: {(RUN / 'checkpoint-2').resolve()} is step 2 of 2: the run "
                             "finished; nothing to resume") == 2
    assert json.loads((RUN / "glmocr_lf_run.json").read_text()) == record  # nothing changed

"""What planning reads besides the config, built once before any step: the request (options and
process topology), the host (GPUs, installed stack, executables), the caller's environment, the
data check's result and the kernels the machine allows."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.config.models import TrainConfig
from glmocr_lf.kernels import CompileMode, KernelsMode
from glmocr_lf.runtime.constants import Hub
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.host import Host
from glmocr_lf.runtime.launch import Topology
from glmocr_lf.runtime.machine import Gpu
from glmocr_lf.runtime.versions import Stack
from glmocr_lf.train.datacheck import DataCheck
from glmocr_lf.train.kernels import LIGER_DIST, KernelsDecision, decide

ResumeMode = Literal["resume", "fresh", "auto"]  # auto: --resume-if-any


@dataclass
class LaunchRequest:
    config: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    topology: Topology = field(default_factory=Topology)
    resume: ResumeMode | None = None
    memory_budget_gib: float | None = None
    hub: Hub = "hf"
    check_data: bool = True
    kernels: KernelsMode = "auto"
    compile: CompileMode = "auto"


@dataclass(frozen=True)
class PlanContext:
    """Everything a planning step reads besides the config; built once by `build_context`."""

    request: LaunchRequest
    host: Host
    environ: Mapping[str, str]
    data: DataCheck | None = None  # None: not run, or it failed (data_error)
    data_error: GlmocrLfError | None = None
    kernels: KernelsDecision = field(default_factory=lambda: KernelsDecision(False))

    @property
    def source(self) -> str:
        return str(self.request.config)

    @property
    def topology(self) -> Topology:
        return self.request.topology

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        return self.host.gpus

    @property
    def stack(self) -> Stack:
        return self.host.stack

    @property
    def node_processes(self) -> int:
        """Training processes on this node (what its CPUs are divided among)."""
        return self.topology.processes_per_node(len(self.gpus))

    @property
    def processes(self) -> int:
        """Training processes over all nodes."""
        return self.node_processes * self.topology.nnodes

    @property
    def torchrun(self) -> bool:
        return self.topology.needs_torchrun(len(self.gpus))

    @property
    def memory_budget_gib(self) -> float | None:
        """--memory-budget, where it applies: it sizes batches for GPU memory."""
        return self.request.memory_budget_gib if self.gpus else None

    @property
    def fused_cross_entropy(self) -> bool:
        """The kernels are on with the fused cross-entropy: less memory per token."""
        return self.kernels.on and "flce" in self.kernels.pieces


def build_context(cfg: TrainConfig, request: LaunchRequest, host: Host,
                  environ: Mapping[str, str] | None = None) -> PlanContext:
    """The context for planning `cfg`: the data check runs here, once (its failure is kept, not raised)."""
    environ = os.environ if environ is None else environ
    data, data_error = None, None
    if request.check_data:
        from glmocr_lf.train.datacheck import check_datasets

        try:
            data = check_datasets(cfg)
        except GlmocrLfError as exc:  # DataError and the file errors under it
            data_error = exc
    kernels = decide(request.kernels, gpus=host.gpus, liger_version=host.installed(LIGER_DIST), environ=environ)
    return PlanContext(request, host, environ, data, data_error, kernels)

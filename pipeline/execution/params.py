"""Where the per-image stages and the training stages run: ``execution`` in params.yaml, free of torch and Dask.

No stage lists this section among its DVC params: per-image outputs never depend on the runner, the number of
workers or the chunk size (tests check the published bytes are the same), and a training run on several
processes is the same training (the preset's global batch, the same data order) up to the order floating-point
sums are taken in; so moving a run to a cluster or onto more GPUs reruns nothing. A training stage writes the
number of processes it ran on into its metrics.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pipeline.schema import Strict

SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://\S+$")


class TrainingExecutionParams(Strict):
    """``processes``: data-parallel processes of one training run (one per GPU; ``torch.distributed`` DDP, the
    preset's batch split between them). ``launcher``: empty, the stage starts them on this machine; otherwise a
    command prefix that starts them (``srun --ntasks=8 --ntasks-per-node=4 --gpus-per-task=1``, or
    ``srun … torchrun … --no-python``: README "Scale-out"). ``backend``: ``auto`` is NCCL on CUDA and gloo on
    the CPU."""

    processes: int = Field(1, ge=1)
    launcher: str = ""
    backend: Literal["auto", "nccl", "gloo"] = "auto"


class ExecutionParams(Strict):
    """``runner``: ``in-process`` (one process, no Dask), ``local`` (a ``distributed.LocalCluster`` of ``workers``
    processes on this machine) or the address of a running Dask scheduler (``tcp://host:8786``, what
    dask-jobqueue's SLURMCluster, dask-cuda's workers or a Kubernetes Dask cluster expose)."""

    runner: str = "in-process"
    workers: int = Field(0, ge=0)  # local: worker processes (0: one per core)
    chunk_size: int = Field(8, ge=1)  # images per chunk task (one progress step, one retry unit)
    retries: int = Field(2, ge=0)  # retries of a chunk that failed as a whole (a lost worker, an OOM)
    connect_timeout: float = Field(5.0, gt=0)  # seconds to wait for the scheduler at a runner address
    training: TrainingExecutionParams = TrainingExecutionParams()  # the training stages' processes

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        if value in ("in-process", "local") or SCHEDULER_ADDRESS.match(value):
            return value
        raise ValueError(f"runner {value!r}: use in-process, local or a Dask scheduler address such as tcp://host:8786")

    @property
    def uses_dask(self) -> bool:
        return self.runner != "in-process"

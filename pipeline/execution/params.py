"""Where the per-image stages run: ``execution`` in params.yaml, free of torch and Dask.

No stage lists this section among its DVC params: outputs never depend on the runner, the number of workers or
the chunk size (tests check the published bytes are the same), so moving a run to a cluster reruns nothing.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from pipeline.schema import Strict

SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://\S+$")


class ExecutionParams(Strict):
    """``runner``: ``in-process`` (one process, no Dask), ``local`` (a ``distributed.LocalCluster`` of ``workers``
    processes on this machine) or the address of a running Dask scheduler (``tcp://host:8786``, what
    dask-jobqueue's SLURMCluster, dask-cuda's workers or a Kubernetes Dask cluster expose)."""

    runner: str = "in-process"
    workers: int = Field(0, ge=0)  # local: worker processes (0: one per core)
    chunk_size: int = Field(8, ge=1)  # images per chunk task (one progress step, one retry unit)
    retries: int = Field(2, ge=0)  # retries of a chunk that failed as a whole (a lost worker, an OOM)
    connect_timeout: float = Field(5.0, gt=0)  # seconds to wait for the scheduler at a runner address

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        if value in ("in-process", "local") or SCHEDULER_ADDRESS.match(value):
            return value
        raise ValueError(f"runner {value!r}: use in-process, local or a Dask scheduler address such as tcp://host:8786")

    @property
    def uses_dask(self) -> bool:
        return self.runner != "in-process"

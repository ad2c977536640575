"""Which process of a data-parallel training run this is, from its environment (free of torch).

A training stage started on several processes learns its rank from the variables its launcher set: ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (torchrun, or the stage itself on this machine:
:mod:`pipeline.execution.launch`), or ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` when the stage's
``execution.training.launcher`` started it with ``srun`` (marked by :data:`WORKER_ENV`, since a SLURM batch
script's own environment has them too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKER_ENV = "WSSS_TRAINING_WORKER"  # set by the stage that started the processes (its launcher)
RELAY_ENV = "WSSS_TRAINING_RELAY"  # the launcher reads this process's monitoring from stdout (pipeline.tracking)
STORE_ENV = "WSSS_TRAINING_STORE"  # the rendezvous file of processes started on this machine


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes, and ``local_rank`` on its machine (its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, outputs, metrics and monitoring."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """This process's place in a data-parallel run (one process of one: not started as one of several)."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    if env.get(WORKER_ENV) and "SLURM_PROCID" in env:
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0")))
    return World()


def is_training_worker() -> bool:
    """Whether this process is one of a training run's processes (so it must not start processes itself)."""
    return current_world().distributed or bool(os.environ.get(WORKER_ENV))


def leave_unless_main(world: World) -> None:
    """Where training ends: every process but rank 0 (which writes the outputs and figures) is done, and exits."""
    if not world.main:
        raise SystemExit(0)

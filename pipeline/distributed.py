"""Data-parallel training with ``torch.distributed``: the process group, the model wrapper and the reductions
the epoch loop (:func:`pipeline.trainer.run_epochs`) needs when ``execution.training.processes`` is above 1.

What a researcher expects of N processes, and where it cannot hold:

- The global batch is the preset's ``batch_size``: each process takes ``batch_size / N`` (refused when it does
  not divide), so a preset's learning rate and schedule keep their meaning; an epoch has as many steps as on
  one process.
- Data order: each epoch's permutation is the one a single process draws from (seed, epoch)
  (``DistributedSampler`` seeded so that its ``seed + epoch`` is :func:`pipeline.trainer.epoch_seed`), and
  process r takes every N-th index of it, so step s of every process together is exactly step s's batch on one
  process, with the same crops (each sample's augmentation is seeded by (seed, epoch, index)). Not the same: a
  dataset smaller than one batch (one step per epoch) loses its last ``len % N`` samples, and randomness
  inside the model (dropout, random masking) is drawn per process.
- Gradients: DDP averages them over the processes; each process's loss is first weighted by its share of the
  step's weight (images, or labelled pixels: what the step averaged over), so the gradient is the one of the
  whole batch's mean. Losses that compare the samples of a batch with each other (APC's and PCC's
  contrastive terms, a CLIP loss) see the process's part of the batch only.
- BatchNorm in training mode becomes ``SyncBatchNorm`` on CUDA (statistics of the whole batch); torch has no
  CPU ``SyncBatchNorm``, so with gloo on the CPU each process normalises its own part.
- Rank 0 alone writes checkpoints, outputs, metrics and monitoring; every process resumes from the last
  epoch's checkpoint, which does not depend on the number of processes.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline.execution.world import STORE_ENV, World


def backend_for(device: torch.device, backend: str = "auto") -> str:
    """``auto``: NCCL on CUDA, gloo on the CPU."""
    return ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend


def join_process_group(world: World, device: torch.device, backend: str = "auto") -> None:
    """Join the run's process group once per process (a rendezvous file on this machine, else ``env://``:
    ``MASTER_ADDR`` / ``MASTER_PORT``); it is left when the process ends."""
    if dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's communicator on this process's GPU, not GPU 0
    store = os.environ.get(STORE_ENV)
    init = f"file://{store}" if store else "env://"
    dist.init_process_group(backend_for(device, backend), init_method=init, rank=world.rank, world_size=world.size)
    atexit.register(leave_process_group)


def leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _Step(torch.nn.Module):
    """The training step as a module's forward, so DDP prepares its gradient reduction around it."""

    def __init__(self, model: torch.nn.Module, step: Callable[[Any], Any]) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: Any) -> Any:
        return self.step(batch)


def data_parallel_step(
    model: torch.nn.Module, step: Callable[[Any], Any], device: torch.device
) -> Callable[[Any], Any]:  # fmt: skip
    """``step`` run through DDP over ``model`` (its BatchNorm layers made ``SyncBatchNorm`` on CUDA, in place,
    keeping their parameters and state-dict keys). Parameters a step leaves unused (a frozen branch, an empty
    batch's shortcut) are allowed."""
    if device.type == "cuda":
        for name, child in list(model.named_children()):
            setattr(model, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return DistributedDataParallel(_Step(model, step), find_unused_parameters=True)


def global_means(values: dict[str, float], weight: float) -> tuple[dict[str, float], float]:
    """The step's values averaged over every process's part of the batch (weighted by each part's weight),
    and the total weight."""
    sums = torch.tensor([*(value * weight for value in values.values()), float(weight)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        sums = sums.cuda()
    dist.all_reduce(sums)
    total = float(sums[-1])
    return {key: float(sums[index]) / total if total else float("nan") for index, key in enumerate(values)}, total


def process_mean(value: torch.Tensor, count: int, empty: float) -> torch.Tensor:
    """A batch statistic a method keeps (USAGE's learning status) over every process's part of the batch:
    ``value``, the mean of ``count`` items here, made the mean over all processes' items (``empty`` when there
    are none); ``value`` itself on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    both = torch.tensor([float(value) * count, float(count)], dtype=torch.float64, device=value.device)
    dist.all_reduce(both)
    return value.new_tensor(float(both[0] / both[1]) if both[1] else empty)

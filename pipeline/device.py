"""The one place that decides where tensors live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pipeline.execution.world import WORKER_ENV, World, current_world

if TYPE_CHECKING:
    from pipeline.params import PipelineParams


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto | cpu | cuda | cuda:N`` to a device; ``auto`` takes CUDA when present. A process of a
    data-parallel run given ``auto`` or ``cuda`` takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and current_world().distributed:
        name = f"cuda:{current_world().local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device: '{name}' was requested but CUDA is not available on this machine (set device: "
                           f"auto or cpu)")  # fmt: skip
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"device: '{name}' was requested but this machine has {torch.cuda.device_count()} CUDA "
                           f"device(s), numbered from 0")  # fmt: skip
    return device


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to ``precision`` (``fp32``: off) on ``device``, for training and inference alike."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


@dataclass(frozen=True)
class TrainingRuntime:
    """How a training stage computes on its device: the DataLoader's options (:func:`loader_options`) and the
    precision (``precision`` in params): ``fp32``, or autocast to ``bf16`` / ``fp16`` for the forward pass and the
    losses, with a gradient scaler for ``fp16`` (the weights and the optimiser stay fp32); and what the run logs
    while it trains (``monitoring`` in params: the per-epoch validation subset, prediction images every so many
    epochs, system figures); and this process's place among the run's data-parallel processes
    (``execution.training``; :mod:`pipeline.distributed`) with their ``backend``."""

    loader: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    validation_images: int = 0
    images_every: int = 0
    system: bool = False
    world: World = World()
    backend: str = "auto"

    def autocast(self, device: torch.device) -> torch.autocast:
        return autocast(device, self.precision)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")

    def key_settings(self) -> dict[str, Any]:
        """What the resumable work key of a training run adds for this runtime (a checkpoint is resumed only by
        a run that computes the same numbers): nothing for fp32 without workers, so those keys are as before."""
        workers = self.loader.get("num_workers", 0)
        return {**({"precision": self.precision} if self.precision != "fp32" else {}),
                **({"loader_workers": workers} if workers else {})}  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        """The settings that change a training stage's numbers, for its metrics (the processes, when several)."""
        return {"precision": self.precision, "loader_workers": self.loader.get("num_workers", 0),
                **({"processes": self.world.size} if self.world.distributed else {})}  # fmt: skip


PLAIN_RUNTIME = TrainingRuntime()  # fp32, no loader workers: what a training function runs without a runtime


def training_runtime(params: PipelineParams, device: torch.device) -> TrainingRuntime:
    """A training stage's runtime on ``device`` from ``loader_workers``, ``precision``, ``monitoring`` and this
    process's place among ``execution.training.processes``."""
    monitoring, training, world = params.monitoring, params.execution.training, current_world()
    if os.environ.get(WORKER_ENV) and world.size != training.processes:
        raise ValueError(f"execution.training.processes is {training.processes} but its launcher started "
                         f"{world.size} processes ({training.launcher or 'this machine'})")  # fmt: skip
    return TrainingRuntime(loader_options(params.loader_workers, device), params.precision,
                           monitoring.validation_images, monitoring.images_every, monitoring.system, world,
                           training.backend)  # fmt: skip


def loader_options(workers: int | None, device: torch.device) -> dict[str, Any]:
    """The training DataLoader's options on ``device``: ``workers`` processes (``loader_workers``; None: none on
    the CPU, where the trainer's own threads use the cores, and the cores available, up to 8, on CUDA), memory
    pinned for CUDA. Each epoch's order is drawn in the main process and each sample's augmentation is seeded by
    (seed, epoch, index), so the workers make the same crops; but a worker computes them on one thread, and
    torch's resampling rounds differently on one thread than on several (≤ 5e-7, measured), so the count is a
    setting the training stages track, as precision. Workers are started per epoch (the dataset's epoch seeds
    the augmentation), so they are not kept between epochs."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    return {"num_workers": workers, "pin_memory": device.type == "cuda"}


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (CPU and CUDA) and return a CPU generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

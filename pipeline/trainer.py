"""The epoch loop shared by CAM-method and segmenter training: seeded, checkpointed, resumable, named losses.

A training step returns named loss terms (mmsegmentation's loss dict); their sum is optimised and each is
logged per epoch, weighted by what the step says it averaged over (images, labelled pixels). Every epoch
reseeds torch from (seed, epoch) and gets a loader whose order comes from the same pair, and the model,
optimiser and schedule are checkpointed after every epoch, so a run killed at any point resumes from its last
checkpoint and ends with the same weights and loss history as an uninterrupted one.

On several processes (``execution.training.processes``; :mod:`pipeline.distributed`) each process takes its
part of every batch, the step runs through DDP, the logged values are the whole batch's, and rank 0 alone
writes the checkpoint and the curves; the checkpoint is the same whatever the number of processes, so a run
resumes on any number.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.io import atomic_path, write_torch
from pipeline.live import TrainingLog
from pipeline.tracking import ProgressBar, info

Step = Callable[[Any], tuple[dict[str, torch.Tensor], int]]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness (data order, augmentation, dropout)."""
    return seed * 1_000_003 + epoch


def warmup_cosine(steps: int, warmup_fraction: float, start: float = 0.0, floor: float = 0.0) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up from ``start`` over ``warmup_fraction`` of the steps, then
    cosine down to ``floor`` (both fractions of the peak; timm's ``warmup_lr_init`` and ``lr_min`` over it)."""
    warmup = round(steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * (step + 1) / warmup
        return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def spread(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all of them without a limit or when fewer): the
    fixed subset a train-set figure is computed on."""
    if limit is None or count <= limit:
        return list(range(count))
    return [index * count // limit for index in range(limit)]


class EpochLoader:
    """Per-epoch loaders of a dataset that has an ``epoch`` attribute (its augmentation's seed): the order of
    each epoch comes from (seed, epoch). The last partial batch is dropped when there are several batches
    (BatchNorm needs more than one sample per batch). ``runtime``: its worker processes and pinned memory
    (:func:`pipeline.device.loader_options`: the same crops, resampled on one thread each), and its processes:
    on N of them each loads ``batch_size / N`` samples of every batch (:mod:`pipeline.distributed`)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, runtime: TrainingRuntime = PLAIN_RUNTIME) -> None:
        self.dataset, self.batch_size, self.seed, self.options = dataset, batch_size, seed, runtime.loader
        self.world = runtime.world
        if batch_size % self.world.size:
            raise ValueError(f"batch size {batch_size} does not split over {self.world.size} processes "
                             f"(execution.training.processes): use a batch size it divides")  # fmt: skip
        self.drop_last = len(dataset) > batch_size
        self.batches = len(dataset) // batch_size if self.drop_last else 1  # per epoch

    def __call__(self, epoch: int) -> DataLoader:
        self.dataset.epoch = epoch
        if not self.world.distributed:
            order = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            return DataLoader(self.dataset, self.batch_size, shuffle=True, generator=order, drop_last=self.drop_last,
                              **self.options)  # fmt: skip
        sampler = EpochSampler(self.dataset, self.world.size, self.world.rank, seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(self.dataset, self.batch_size // self.world.size, sampler=sampler,
                          drop_last=self.drop_last, **self.options)  # fmt: skip


class EpochSampler(DistributedSampler):
    """A process's part of each epoch (every N-th index, from its rank) of the very permutation one process's
    loader draws from (seed, epoch): the DataLoader first takes one int64 from its generator (its workers'
    base seed), then ``RandomSampler`` draws ``randperm``. So the batches of all processes at a step together
    are the one-process batch of that step (tests/test_distributed.py checks it against the DataLoader)."""

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader's base-seed draw
        order = torch.randperm(len(self.dataset), generator=generator).tolist()[: self.total_size]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: the stage stops (non-zero exit) instead of training on garbage; the last
    epoch's checkpoint stays for a resume once the cause (a learning rate too high, bad data) is fixed."""

    def __init__(self, name: str, epoch: int, losses: dict[str, float], checkpoint: Path | None) -> None:
        terms = ", ".join(f"{key} {value:.4g}" for key, value in losses.items() if key != "loss")
        kept = f"the checkpoint of epoch {epoch - 1} stays at {checkpoint}" if checkpoint else "no epoch finished"
        super().__init__(f"{name}: the loss is not finite in epoch {epoch} ({terms}); lower the learning rate or "
                         f"check the inputs; {kept}")  # fmt: skip


def run_epochs(
    name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, loader: Callable[[int], Iterable], step: Step, epochs: int,
    seed: int, checkpoint: Path, after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[int], dict[str, float]] | None = None, runtime: TrainingRuntime = PLAIN_RUNTIME,
    live_out: Path | None = None, epoch_images: Callable[[int], dict[str, Any]] | None = None,
    system: bool = True,
) -> list[dict[str, float]]:  # fmt: skip
    """Train ``epochs`` epochs (resuming from ``checkpoint``); return the per-epoch loss history.

    ``loader(epoch)`` gives the epoch's batches; ``step(batch)`` returns (named losses, weight); ``after_step``
    runs after each optimiser step (an EMA teacher's update). Each history row holds the epoch, the summed
    ``loss`` and every named term, averaged over the epoch's weights, then what ``after_epoch(epoch)``
    returns (validation figures named ``val_…``, logged only: no checkpoint is picked by them). ``runtime.precision``
    autocasts ``step`` (bf16 / fp16, with a gradient scaler for fp16, checkpointed with the rest).

    With ``live_out`` (the stage's output folder) the run logs live curves (:class:`pipeline.live.TrainingLog`):
    per step each term, each parameter group's learning rate and the gradient norm; per epoch the means,
    the validation figures and ``epoch_images(epoch)``; with ``system``, samples/s and system metrics.

    On several processes (``runtime.world``) every process calls this with its part of each batch
    (``loader``); rank 0 alone validates, logs and writes the checkpoint, and every process returns the history.
    """
    device = next(model.parameters()).device
    world = runtime.world
    scaler = runtime.grad_scaler(device)
    start, history = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start, history = state["epoch"], state["history"]
        info(f"{name}: resuming after epoch {start}/{epochs} from {checkpoint}")
    batches = getattr(loader, "batches", None)  # per epoch, when the loader knows
    total = batches * (epochs - start) if batches else None
    steps_done = sum(row.get("steps", 0) for row in history) if history and "steps" in history[-1] else 0
    logged = live_out is not None and world.main
    live = TrainingLog(name, checkpoint.parent if logged else None, live_out if logged else None, steps_done, system)
    forward = step
    if world.distributed:
        from pipeline.distributed import data_parallel_step, global_means, join_process_group

        join_process_group(world, device, runtime.backend)
        forward = data_parallel_step(model, step, device)
        info(f"{name}: rank {world.rank} of {world.size} processes on {device}")
    try:
        with ProgressBar(total=total, desc=name, unit="batches") as bar:  # closed on an error too: its line ends
            for epoch in range(start, epochs):
                torch.manual_seed(epoch_seed(seed, epoch))
                model.train()
                sums: dict[str, float] = {}
                total_weight, steps = 0, 0
                for batch in loader(epoch):
                    bar.advance()
                    with runtime.autocast(device):
                        losses, weight = forward(batch)
                        loss = sum(losses.values())
                    values = {key: value.item() for key, value in {"loss": loss, **losses}.items()}
                    if world.distributed:  # the whole batch's values; this part's share of its gradient
                        values, batch_weight = global_means(values, weight)
                        loss = loss * (weight * world.size / batch_weight) if batch_weight else loss
                        weight = batch_weight
                    if not math.isfinite(values["loss"]):
                        raise TrainingDiverged(name, epoch + 1, values, checkpoint if start or epoch else None)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)  # a no-op scale without fp16: the norm is of the true gradients
                    norm = gradient_norm(model)
                    rates = learning_rates(optimizer)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if after_step is not None:
                        after_step()
                    for key, value in values.items():
                        sums[key] = sums.get(key, 0.0) + value * weight
                    total_weight += weight
                    steps += 1
                    live.step(values, rates, norm, batch_size(batch) * world.size)  # every process's part
                means = {k: v / max(total_weight, 1) for k, v in sums.items()}
                validation = after_epoch(epoch + 1) if after_epoch is not None and world.main else {}
                history.append({"epoch": epoch + 1, **means, **validation, "steps": steps})
                terms = " ".join(f"{k} {v:.4f}" for k, v in {**means, **validation}.items())
                if world.main:
                    info(f"{name}: epoch {epoch + 1}/{epochs} {terms}")
                live.epoch(epoch + 1, means, validation, epoch_images(epoch + 1) if epoch_images else None)
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                         "history": history}  # fmt: skip
                if world.main:
                    write_torch(checkpoint, state)
    finally:
        live.close()  # ends the system monitor's thread, also on an error
    return [{key: value for key, value in row.items() if key != "steps"} for row in history]


def gradient_norm(model: torch.nn.Module) -> float:
    """The L2 norm of all parameters' gradients together (what clipping would measure)."""
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Each parameter group's learning rate, by the group's ``name`` where it has one, else its index."""
    return {str(group.get("name", index)): group["lr"] for index, group in enumerate(optimizer.param_groups)}


def batch_size(batch: Any) -> int:
    """The number of samples in a batch (the first tensor's first dimension)."""
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return len(first) if hasattr(first, "__len__") else 1


def write_history(path: Path, history: list[dict[str, float]], columns: tuple[str, ...] = ("epoch", "loss")) -> None:
    """The loss history as CSV (epoch, loss, then each named term), for DVC plots; with no history (nothing
    was trained) just the header of ``columns``."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]) if history else list(columns))
        writer.writeheader()
        writer.writerows(history)

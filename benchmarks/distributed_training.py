"""Training steps/s on one process against two data-parallel processes (``execution.training.processes``), as
ratios measured in one run.

    python -m benchmarks.distributed_training [--steps 12] [--batch 16] [--rounds 2]

For the segmenter (DeepLabV3+ / ResNet-18, 96 px crops) and one ViT CAM method (plain CAM on the demo's ViT,
96 px), ``--steps`` optimiser steps of a ``--batch`` global batch of random images through the epoch loop
(:func:`pipeline.trainer.run_epochs`): once on one process with every core, once on two processes started by
torchrun (gloo on the CPU, NCCL on CUDA; each process takes half of every batch and, on the CPU, half the
cores), alternating, ``--rounds`` times; the medians. Only the second of two epochs is timed (not the
start-up, the process group, the first steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.execution.launch import free_port

MODELS = ("segmenter", "cam-vit")
SIZE, CLASSES = 96, 20


def build(model: str, device):  # -> (module, step, optimizer)
    """The network, its training step on a (images, targets) batch, and its optimiser."""
    import torch

    from pipeline.cams.contract import BuildContext
    from pipeline.cams.params import CamParams
    from pipeline.cams.registry import CAM_METHODS
    from pipeline.params import SegmenterParams
    from pipeline.segmentation.training import build_segmenter, segmentation_loss

    torch.manual_seed(0)
    if model == "segmenter":
        network = build_segmenter(SegmenterParams(), CLASSES + 1).to(device)

        def step(batch):
            images, labels = (part.to(device) for part in batch)
            return {"cross_entropy": segmentation_loss(network(images), labels)}, len(images)

        return network, step, torch.optim.AdamW(network.parameters(), lr=1e-4)
    params = CamParams.model_validate({"method": "cam", "cam": {"backbone": "vit"}}).selected()
    context = BuildContext(class_names=tuple(f"c{i}" for i in range(CLASSES)), device=device, pretrained=False)
    network = CAM_METHODS.get("cam").build(params, context).to(device)
    groups = network.parameter_groups(params.training)

    def step(batch):
        images, labels = (part.to(device) for part in batch)
        targets = torch.zeros(len(labels), CLASSES, device=device).scatter_(1, labels.flatten(1)[:, :2] % CLASSES, 1.0)
        return network.training_step(images, targets), len(images)

    return network, step, network.optimizer(groups, params.training)


class RandomImages:
    """``count`` random images with label maps (an ``epoch`` attribute, as the training datasets have)."""

    def __init__(self, count: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(count, 3, SIZE, SIZE, generator=generator)
        self.labels = torch.randint(0, CLASSES + 1, (count, SIZE, SIZE), generator=generator)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def worker(model: str, steps: int, batch: int, out: Path) -> None:
    """One process's part: an epoch of ``steps`` steps after a warm-up epoch; rank 0 writes steps/s to ``out``."""
    import torch

    from pipeline.device import TrainingRuntime, resolve_device
    from pipeline.execution.world import current_world
    from pipeline.trainer import EpochLoader, run_epochs

    device, world = resolve_device("auto"), current_world()
    runtime = TrainingRuntime(world=world)
    network, step, optimizer = build(model, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loader = EpochLoader(RandomImages(steps * batch), batch, 0, runtime)
    ends: list[float] = []  # rank 0's clock at the end of each epoch: the first warms up, the second is timed

    def epoch_end(epoch: int) -> dict[str, float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ends.append(time.perf_counter())
        return {}

    with tempfile.TemporaryDirectory() as work:
        run_epochs(model, network, optimizer, scheduler, loader, step, 2, 0, Path(work) / "checkpoint.pt",
                   after_epoch=epoch_end, runtime=runtime, system=False)  # fmt: skip
    if world.main:
        out.write_text(json.dumps({"steps_per_s": steps / (ends[1] - ends[0]), "device": str(device)}))


def measure(model: str, processes: int, steps: int, batch: int) -> dict:
    """Steps/s of ``model`` on ``processes`` processes (torchrun for two), in fresh processes."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        args = ["-m", "benchmarks.distributed_training", "--worker", model, "--steps", str(steps), "--batch",
                str(batch), "--out", str(out)]  # fmt: skip
        env = {**os.environ, "DO_NOT_TRACK": "1"}
        if processes == 1:
            command = [sys.executable, *args]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                       "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]  # fmt: skip
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
        subprocess.run(command, check=True, env=env, capture_output=True, text=True)
        return json.loads(out.read_text())


def main(steps: int, batch: int, rounds: int) -> None:
    rates: dict[tuple[str, int], list[float]] = {}
    device = "?"
    for _ in range(rounds):
        for model in MODELS:
            for processes in (1, 2):
                result = measure(model, processes, steps, batch)
                rates.setdefault((model, processes), []).append(result["steps_per_s"])
                device = result["device"]
    print(f"{steps} steps of a global batch of {batch} images of {SIZE} px on {device}, {os.cpu_count()} cores "
          f"(medians of {rounds}, alternating):")  # fmt: skip
    for model in MODELS:
        one, two = (statistics.median(rates[model, processes]) for processes in (1, 2))
        print(f"  {model}: 1 process {one:.2f} steps/s, 2 processes {two:.2f} steps/s; ratio {two / one:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed_training",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.batch, args.out)
    else:
        main(args.steps, args.batch, args.rounds)

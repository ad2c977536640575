"""What live monitoring costs a training run: the shared epoch loop without logs, with the DVCLive curves, and
with the curves and the system monitor, as ratios of steps/s in one run.

    python -m benchmarks.monitoring [--steps 1000] [--size 64]

A small ConvNet on random 64 px batches of 8 (steps of a few milliseconds on a CPU: the worst case for
per-step logging, whose cost is fixed per step); each setting runs in a fresh work folder, alternating, three
times, and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipeline.trainer import run_epochs


def network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(16, 20))  # fmt: skip


def steps_per_second(steps: int, size: int, live: bool, system: bool) -> float:
    """Train ``steps`` steps (10 epochs) with the given logging; optimiser steps per second."""
    torch.manual_seed(0)
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [(torch.randn(8, 3, size, size), torch.randint(0, 2, (8, 20)).float()) for _ in range(steps // 10)]

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        images, targets = batch
        return {"bce": torch.nn.functional.binary_cross_entropy_with_logits(model(images), targets)}, len(images)

    with tempfile.TemporaryDirectory() as folder:
        work, out = Path(folder) / "work", Path(folder) / "out"
        work.mkdir()
        start = time.perf_counter()
        run_epochs("benchmark", model, optimizer, scheduler, lambda epoch: batches, step, 10, 0,
                   work / "checkpoint.pt", live_out=out if live else None, system=system)  # fmt: skip
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    settings = {"no live logs": (False, False), "DVCLive curves": (True, False), "curves + system": (True, True)}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(3):
        for name, (live, system) in settings.items():
            rates[name].append(steps_per_second(args.steps, args.size, live, system))
    baseline = statistics.median(rates["no live logs"])
    print(f"{args.steps} steps of a small ConvNet on {args.size} px batches of 8, torch threads "
          f"{torch.get_num_threads()}; median of 3")  # fmt: skip
    print("| logging | steps/s | ratio to no live logs |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / baseline:.3f} |")


if __name__ == "__main__":
    main()

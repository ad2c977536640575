"""Every CAM method's tiny config trained one epoch on this process's part of a fixed tiny dataset, its weights
saved per rank: run by tests/test_distributed.py under torchrun on two processes, and on one for reference.

Usage: ``python -m tests.distributed_methods OUT`` in a folder holding the methods' inputs
(tests/test_cam_contract.py's ``vocab_outputs``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pipeline.device import TrainingRuntime
from pipeline.execution.world import current_world
from pipeline.trainer import EpochLoader, run_epochs
from tests.test_cam_contract import METHODS, cam_params, tiny_method

IMAGES, BATCH, SIZE = 8, 4, 48


class TinyImages(Dataset):
    """Fixed random images with labels, and what a method's step also takes (coarse seeds, prompt choices)."""

    def __init__(self, seeds: bool, choices: bool) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(IMAGES, 3, SIZE, SIZE, generator=generator)
        self.targets = (torch.rand(IMAGES, 3, generator=generator) < 0.5).float()
        self.targets[:, 0] = 1.0  # every image has a class
        self.seeds = torch.randint(0, 4, (IMAGES, SIZE, SIZE), generator=generator)
        self.seeds[:, :8] = 255
        self.choices = torch.randint(0, 2, (IMAGES, 3), generator=generator)
        self.extras = [part for part, wanted in ((self.seeds, seeds), (self.choices, choices)) if wanted]
        self.epoch = 0

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.images[index], self.targets[index], *(extra[index] for extra in self.extras)


def train(method: str, backbone: str | None, out: Path) -> None:
    """One epoch of the method on this process's part of the batches; its state and history saved per rank.
    Plain SGD at a constant rate instead of the method's optimiser (the stages' tests run those), so the
    weights move linearly with the gradients (Adam's first steps are about lr · sign(gradient), which rounding
    flips); the method's parameter groups all the same."""
    world = current_world()
    cam = cam_params(method, backbone)
    training = cam.selected().training
    model = tiny_method(method, backbone).train()
    dataset = TinyImages("coarse_seeds" in type(cam.selected()).extra_inputs, model.per_image_inputs() is not None)
    loader = EpochLoader(dataset, BATCH, 0, TrainingRuntime(world=world))
    groups = model.parameter_groups(training)
    optimizer = torch.optim.SGD([{"params": group["params"], "name": group["name"]} for group in groups], lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[dict[str, torch.Tensor], int]:
        images, targets, *extras = batch
        return model.training_step(images, targets, *extras), len(images)

    name = f"{method}-{backbone or 'only'}"
    history = run_epochs(name, model, optimizer, scheduler, loader, step, 1, 0, out / f"{name}.checkpoint.pt",
                         model.after_optimizer_step, runtime=TrainingRuntime(world=world))  # fmt: skip
    torch.save({"state": model.state_dict(), "history": history}, out / f"{name}-rank{world.rank}.pt")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for method, backbone in METHODS:
        cam = cam_params(method, backbone)
        if type(cam.selected()).trains:
            train(method, backbone, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

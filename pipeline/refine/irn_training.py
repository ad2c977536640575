"""Stage ``train_irn``: IRN's boundary network trained on the seeds (pipeline/refine/irn.py), or a placeholder.

The trunk is the trained CAM method's own ResNet (``network.backbone: classifier``: any method whose model
holds one — plain CAM, USAGE on a ResNet, CLIMS, POLE) or a torchvision ResNet with ImageNet weights from the
local cache (``imagenet``, IRN's own choice; works beside any CAM method). Only the boundary branch trains
(SGD, poly schedule, IRN's); the whole network, trunk included, is saved so the walk needs nothing else. The
epoch loop is the shared resumable one (:mod:`pipeline.trainer`). With another ``refine.method`` selected the
stage writes a placeholder instead (``stages/train_irn.py``: no model import, so it costs no more than the
interpreter), and its output exists and stays byte-stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.backbones import ResNetFeatures, resnet_trunk
from pipeline.cams.params import CamParams
from pipeline.cams.train import load_cam_method
from pipeline.data.loading import IMAGENET_MEAN, IMAGENET_STD, ClassificationDataset
from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.data.sizes import scheduled_epochs
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.execution.world import leave_unless_main
from pipeline.io import fingerprint, remove_work, work_directory, write_json, write_torch
from pipeline.params import IrnRefineParams
from pipeline.refine.irn import BoundaryNetwork
from pipeline.trainer import EpochLoader, run_epochs, write_history

MODEL_NAME = "model.pt"
LOSS_COLUMNS = ("epoch", "loss", "affinity_bg_pos", "affinity_fg_pos", "affinity_neg")


def classifier_trunk(checkpoint: Path, cam: CamParams, class_names: tuple[str, ...]) -> tuple[Any, str, int, tuple]:
    """(trunk, arch, output stride, normalisation) of the ResNet inside the trained CAM method."""
    model = load_cam_method(checkpoint, cam, class_names, torch.device("cpu"))
    features = [m for m in model.modules() if isinstance(m, ResNetFeatures)]
    if not features:
        raise ValueError(f"{checkpoint}: CAM method '{cam.method}' has no ResNet for IRN's boundary branch; set "
                         f"refine.irn.network.backbone: imagenet (a local ImageNet ResNet, as IRN used)")  # fmt: skip
    trunk = features[0]
    return trunk.trunk, trunk.arch, trunk.output_stride, (model.input_mean, model.input_std)


def boundary_trunk(params: IrnRefineParams, checkpoint: Path, cam: CamParams, class_names: tuple[str, ...]):
    """The frozen trunk the boundary branch reads, as (trunk, arch, output stride, normalisation)."""
    if params.network.backbone == "classifier":
        return classifier_trunk(checkpoint, cam, class_names)
    trunk, _ = resnet_trunk(params.network.arch, "imagenet", 16)
    return trunk, params.network.arch, 16, (IMAGENET_MEAN, IMAGENET_STD)


def poly(steps: int, power: float):
    """IRN's learning-rate factor: (1 − step / steps)^power."""
    return lambda step: max(0.0, 1.0 - step / max(1, steps)) ** power


def train_irn(
    params: IrnRefineParams, manifest: Manifest, manifest_dir: Path, seeds: Path, classifier: Path,
    cam: CamParams, seed: int, device: torch.device, out_dir: Path, runtime: TrainingRuntime = PLAIN_RUNTIME,
) -> dict[str, Any]:  # fmt: skip
    """Train the boundary network on the train split's seeds into ``out_dir`` (model.pt, loss.csv,
    metrics.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    training = params.training
    settings = json.dumps({"seed": seed, "irn": params.model_dump(mode="json", exclude={"walk"}),
                           **runtime.key_settings()}, sort_keys=True)  # fmt: skip
    work = work_directory(out_dir, fingerprint(Path(manifest_dir) / MANIFEST_NAME, Path(seeds), Path(classifier),
                                               settings))  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    trunk, arch, trunk_stride, normalisation = boundary_trunk(params, classifier, cam, tuple(manifest.classes))
    network = BoundaryNetwork(trunk, params.network).to(device)
    dataset = ClassificationDataset(manifest, "train", training.crop_size, training.scale_range, seed,
                                    normalisation, seeds)  # fmt: skip
    loader = EpochLoader(dataset, training.batch_size, seed, runtime)
    epochs = scheduled_epochs(training.epochs, training.min_steps, loader.batches)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=training.lr, momentum=training.momentum,
                                weight_decay=training.weight_decay)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly(epochs * loader.batches,
                                                                  training.poly_power))  # fmt: skip

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[dict[str, torch.Tensor], int]:
        images, _, labels = (part.to(device) for part in batch)
        return network.training_step(images, labels, training.radius), len(images)

    history = run_epochs("train_irn", network, optimizer, scheduler, loader, step, epochs, seed,
                         work / "checkpoint.pt", runtime=runtime, live_out=out_dir, system=runtime.system)  # fmt: skip
    leave_unless_main(runtime.world)
    write_torch(out_dir / MODEL_NAME, {
        "method": "irn", "arch": arch, "trunk_stride": trunk_stride, "network": params.network.model_dump(mode="json"),
        "mean": list(normalisation[0]), "std": list(normalisation[1]),
        "state_dict": {k: v.cpu() for k, v in network.state_dict().items()},
    })  # fmt: skip
    write_history(out_dir / "loss.csv", history, LOSS_COLUMNS)
    metrics = {"method": "irn", "backbone": f"{params.network.backbone} {arch}", "epochs": len(history),
               "steps": epochs * loader.batches, **runtime.metrics(),
               "train_loss": history[-1]["loss"], **{k: history[-1][k] for k in LOSS_COLUMNS[2:]}}  # fmt: skip
    write_json(out_dir / "metrics.json", metrics)
    remove_work(work)
    return metrics

"""The first phase of a two-phase CAM method (FMA-WSSS): train it, extract its CAMs, make its coarse seeds.

Each step is a stage reading one request of :mod:`pipeline.cams.coarse_request` and reusing the pipeline's
own machinery — the CAM-method trainer, the resumable CAM extraction (train split) and SAMS on the cached
proposals — so the coarse seeds are exactly what ``cam.method: <first method>`` with ``seeds.method: sams``
would give at the same settings. A request of ``none`` writes placeholders (an empty label set), so the
stages' outputs exist and stay byte-stable for one-phase methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.cams.extract import extract_cams
from pipeline.cams.params import CamInferenceParams, CamParams
from pipeline.cams.train import MODEL_NAME, train_cam_method
from pipeline.data.manifest import Manifest
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.execution.params import ExecutionParams
from pipeline.io import pack_zip, write_json, write_torch
from pipeline.live import empty_curves
from pipeline.params import SamsSeedParams, SeedParams
from pipeline.seeds import make_seeds
from pipeline.trainer import write_history


def first_phase(method: str, params: dict[str, Any], inference: CamInferenceParams | None = None) -> CamParams:
    """CAM params selecting the first method with its params (and inference settings)."""
    return CamParams(method=method, **{method: params}, **({"inference": inference} if inference else {}))


def train_coarse(request: dict[str, Any], manifest: Manifest, manifest_dir: Path, device: torch.device,
                 out_dir: Path, runtime: TrainingRuntime = PLAIN_RUNTIME) -> dict[str, Any]:  # fmt: skip
    """Train the first method on the image labels into ``out_dir`` (model.pt, loss.csv, metrics.json)."""
    if request["method"] == "none":
        out_dir.mkdir(parents=True, exist_ok=True)
        write_torch(out_dir / MODEL_NAME, {"method": "none"})
        write_history(out_dir / "loss.csv", [])
        empty_curves(out_dir)
        write_json(out_dir / "metrics.json", {"method": "none"})
        return {"method": "none"}
    cam = first_phase(request["method"], request["params"])
    return train_cam_method(manifest, manifest_dir, cam, request["seed"], device, out_dir, runtime)


def coarse_cams(request: dict[str, Any], manifest: Manifest, manifest_dir: Path, checkpoint: Path, device: str,
                out: Path, execution: ExecutionParams) -> dict[str, int]:  # fmt: skip
    """The first method's CAMs of the train split at the requested scales, as the CAM store ``out``."""
    if request["method"] == "none":
        return publish_empty(out)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    inference = CamInferenceParams(scales=tuple(request["scales"]), flip=request["flip"], split="train",
                                   fit=request.get("fit", "pad"), square_size=request.get("square_size"),
                                   precision=request.get("precision", "fp32"))  # fmt: skip
    cam = first_phase(request["method"], state["params"], inference)
    return extract_cams(manifest, manifest_dir, cam, checkpoint, device, out, execution, "coarse_cams")


def coarse_seeds(request: dict[str, Any], manifest_dir: Path, cams: Path, proposals: Path, out: Path,
                 execution: ExecutionParams) -> dict[str, int]:  # fmt: skip
    """SAMS seeds of the first method's CAMs on the cached proposals, as the label set ``out``."""
    if request["method"] == "none":
        return publish_empty(out)
    seeds = SeedParams(method="sams", sams=SamsSeedParams(t_r=request["t_r"], alpha=request["alpha"]))
    return make_seeds(manifest_dir, cams, seeds, out, proposals, execution, "coarse_seeds")


def publish_empty(out: Path) -> dict[str, int]:
    """An empty zip: the output of a step a one-phase method does not need."""
    empty = out.parent / f".{out.name}.empty"
    empty.mkdir(parents=True, exist_ok=True)
    pack_zip(empty, out)
    empty.rmdir()
    return {"images": 0}

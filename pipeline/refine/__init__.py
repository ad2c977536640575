"""Pseudo-label refinement by name (none, dense CRF, random-walk affinity, IRN) and the ``refine`` stage.

A refinement method is ``fn(image, seeds, cams, classes, params) -> labels``: the H×W×3 uint8 image, the
stage's seed labels (uint8, 255 = ignore), the (k, H, W) CAMs of the image's classes, their 0-based indices
and the method's params; it returns a uint8 label map (255 allowed). A method with a trained model (IRN's
boundary network, stage ``train_irn``) also gets its path as ``model``. Images are computed in chunks on the
runner of ``execution`` (:mod:`pipeline.execution`); the output does not depend on it.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.cams.store import CamStore
from pipeline.data.loading import load_image
from pipeline.execution.chunks import LabelJob, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import LabelSet, fingerprint, publish_zip, work_directory
from pipeline.params import RefineParams
from pipeline.registry import Registry

# irn imports torch: only when selected.
REFINE_METHODS: Registry = Registry("refine method", selected_by="refine.method", loaders={
    "affinity": "pipeline.refine.affinity", "crf": "pipeline.refine.crf", "irn": "pipeline.refine.irn",
})  # fmt: skip


@REFINE_METHODS.register("none")
def no_refinement(image: np.ndarray, seeds: np.ndarray, cams: np.ndarray, classes: list[int], params) -> np.ndarray:
    """The seeds unchanged."""
    return seeds


class RefineJob(LabelJob):
    """One image's refined labels from its image, seeds and CAMs (and the method's trained model)."""

    def __init__(self, key: str, work: Path, manifest_dir: Path, cams: Path, seeds: Path, params: RefineParams,
                 model: Path | None, device: str = "cpu") -> None:  # fmt: skip
        super().__init__(key, work)
        self.manifest_dir, self.cams, self.seeds, self.params, self.model = manifest_dir, cams, seeds, params, model
        self.device = device

    def load(self) -> None:
        from pipeline.data.manifest import load_manifest

        self.manifest = load_manifest(self.manifest_dir)
        self.by_id = self.manifest.by_id()
        self.store, self.seed_labels = CamStore(self.cams), LabelSet(self.seeds)
        fn = REFINE_METHODS.get(self.params.method)
        self.refine = fn
        if self.model is not None:  # a trained model runs on this worker's device (its GPU under dask-cuda)
            from pipeline.device import resolve_device

            self.refine = partial(fn, model=self.model, device=resolve_device(self.device))
        self.method_params = self.params.selected()

    def compute(self, image_id: str) -> None:
        image = load_image(self.manifest, self.by_id[image_id])
        seeds = self.seed_labels.read(image_id, image.shape[:2])
        maps, classes = self.store.read(image_id)
        label = self.refine(image, seeds, maps, classes, self.method_params)
        self.write_label(image_id, label)


def refine_labels(
    manifest_dir: Path, cams: Path, seeds: Path, params: RefineParams, out: Path, execution: ExecutionParams,
    model: Path | None = None, device: str = "cpu",
) -> dict[str, int]:  # fmt: skip
    """Refine every seed into ``out`` on ``execution``'s runner (built in a resumable work directory, then
    published as a zip); ``model``: the method's trained model (IRN's boundary network), run on ``device``."""
    store = CamStore(cams)
    key = fingerprint(
        store.attributes["inputs_key"], json.dumps({"method": params.method, "params": params.model_dump(
            mode="json")}, sort_keys=True), Path(seeds), *([Path(model)] if model else []),
    )  # fmt: skip
    work = work_directory(out, key)
    job = RefineJob(key, work, manifest_dir, cams, seeds, params, model, device)
    counts = run_images("refine", job, store.ids(), execution)
    publish_zip(work, out)
    return counts

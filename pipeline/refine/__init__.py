"""Pseudo-label refinement by name (none, dense CRF, random-walk affinity, IRN) and the ``refine`` stage.

A refinement method is ``fn(image, seeds, cams, classes, params) -> labels``: the H×W×3 uint8 image, the
stage's seed labels (uint8, 255 = ignore), the (k, H, W) CAMs of the image's classes, their 0-based indices
and the method's params; it returns a uint8 label map (255 allowed). A method with a trained model (IRN's
boundary network, stage ``train_irn``) also gets its path as ``model``. Images are spread over processes with
joblib; the output does not depend on the number of workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from pipeline.cams.store import CamStore
from pipeline.data.loading import load_image
from pipeline.data.manifest import Manifest
from pipeline.io import LabelSet, fingerprint, inside, publish_zip, work_directory, write_label_png
from pipeline.params import RefineParams
from pipeline.registry import Registry
from pipeline.tracking import progress

REFINE_METHODS: Registry = Registry("refine method")

from pipeline.refine import affinity as _affinity  # noqa: E402,F401  (registers "affinity")
from pipeline.refine import crf as _crf  # noqa: E402,F401  (registers "crf")
from pipeline.refine import irn as _irn  # noqa: E402,F401  (registers "irn")


@REFINE_METHODS.register("none")
def no_refinement(image: np.ndarray, seeds: np.ndarray, cams: np.ndarray, classes: list[int], params) -> np.ndarray:
    """The seeds unchanged."""
    return seeds


def refine_many(
    items: Iterable[tuple], method: str, params, workers: int, model: Path | None = None
) -> Iterator[np.ndarray]:  # fmt: skip
    """Refine (image, seeds, cams, classes) tuples in order on ``workers`` processes (0: one per core)."""
    fn = REFINE_METHODS.get(method)
    fn = partial(fn, model=model) if model is not None else fn
    jobs = workers or os.cpu_count() or 1
    if jobs == 1:
        for image, seeds, cams, classes in items:
            yield fn(image, seeds, cams, classes, params)
        return
    parallel = Parallel(n_jobs=jobs, return_as="generator", batch_size=1, pre_dispatch="2*n_jobs")
    yield from parallel(delayed(fn)(image, seeds, cams, classes, params) for image, seeds, cams, classes in items)


def refine_labels(
    manifest: Manifest, cams: Path, seeds: Path, params: RefineParams, out: Path, model: Path | None = None
) -> dict[str, int]:  # fmt: skip
    """Refine every seed into ``out`` (built in a resumable work directory, then published as a zip);
    ``model``: the method's trained model (IRN's boundary network)."""
    store = CamStore(cams)
    key = fingerprint(
        store.attributes["inputs_key"], json.dumps({"method": params.method, "params": params.model_dump(
            mode="json", exclude={"workers"})}, sort_keys=True), Path(seeds), *([Path(model)] if model else []),
    )  # fmt: skip
    work = work_directory(out, key)
    work.mkdir(parents=True, exist_ok=True)
    by_id = manifest.by_id()
    ids = store.ids()
    todo = [image_id for image_id in ids if not inside(work, f"{image_id}.png").exists()]
    seed_labels = LabelSet(seeds)

    def inputs() -> Iterator[tuple]:
        for image_id in todo:
            entry = by_id[image_id]
            image = load_image(manifest, entry)
            label = seed_labels.read(image_id, image.shape[:2])
            maps, classes = store.read(image_id)
            yield image, label, maps, classes

    refined = refine_many(inputs(), params.method, params.selected(), params.workers, model)
    for image_id, label in progress(zip(todo, refined, strict=True), total=len(todo), desc="refine"):
        write_label_png(inside(work, f"{image_id}.png"), np.asarray(label, dtype=np.uint8))
    publish_zip(work, out)
    return {"images": len(ids), "computed": len(todo), "resumed": len(ids) - len(todo)}

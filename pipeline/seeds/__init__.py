"""Seed methods by name (CAMs → pseudo-label seeds with 255 for uncertain pixels) and the seeding stage.

A seed method is ``fn(cams, classes, params)``; methods that also read the class-agnostic proposals of the
``sam_masks`` stage set ``fn.uses_proposals = True`` and take the image's
:class:`~pipeline.proposals.regions.Proposals` as a fourth argument; methods that can use the CAM method's own
background map (stored by methods with a background class) set ``fn.uses_background = True`` and take it as the
keyword ``background`` (None when the CAM method has none).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.cams.store import CamStore
from pipeline.data.manifest import Manifest
from pipeline.io import fingerprint, inside, publish_zip, work_directory, write_label_png
from pipeline.params import SeedParams
from pipeline.proposals.store import ProposalStore
from pipeline.registry import Registry
from pipeline.tracking import progress

SEED_METHODS: Registry = Registry("seed method")


def require_background(background: np.ndarray | None, setting: str) -> np.ndarray:
    """The CAM method's background map, or a message saying which setting needs one."""
    if background is None:
        raise ValueError(f"{setting}.background: model needs a CAM method with a background class (apc, pcc); "
                         "the CAM store has no background map")  # fmt: skip
    return background


from pipeline.seeds import sams as _sams  # noqa: E402,F401  (registers "sams")
from pipeline.seeds import threshold as _threshold  # noqa: E402,F401  (registers "threshold")
from pipeline.seeds import voting as _voting  # noqa: E402,F401  (registers "voting")


def make_seeds(manifest: Manifest, cams: Path, seeds: SeedParams, out: Path, proposals: Path) -> dict[str, int]:
    """One VOC palette PNG seed per image that has CAMs, built in a resumable work directory and published as
    the zip ``out`` (a :class:`~pipeline.io.LabelSet`).

    ``proposals`` (the ``sam_masks`` store) is opened only by the methods that use it.
    """
    store = CamStore(cams)
    seed_fn = SEED_METHODS.get(seeds.method)
    params = seeds.selected()
    regions_store = ProposalStore(proposals) if getattr(seed_fn, "uses_proposals", False) else None
    inputs = [store.attributes["inputs_key"], json.dumps(seeds.model_dump(mode="json"), sort_keys=True)]
    if regions_store is not None:
        inputs.append(regions_store.attributes["inputs_key"])
    key = fingerprint(*inputs)
    work = work_directory(out, key)
    work.mkdir(parents=True, exist_ok=True)
    ids = store.ids()
    by_id = manifest.by_id()
    for image_id in progress(ids, total=len(ids), desc="make_seeds"):
        target = inside(work, f"{image_id}.png")
        if target.exists():
            continue
        entry = by_id.get(image_id)
        if entry is None:
            raise ValueError(f"{cams}: image '{image_id}' is not in the dataset manifest")
        maps, classes, background = store.read_with_background(image_id)
        if maps.shape[1:] != (entry.height, entry.width):
            raise ValueError(
                f"{cams}: CAMs of '{image_id}' are {maps.shape[1:]}, the image is {entry.height}×{entry.width}"
            )
        extra = [regions_store.read(image_id, maps.shape[1:])] if regions_store is not None else []
        options = {"background": background} if getattr(seed_fn, "uses_background", False) else {}
        seeds_map = seed_fn(maps, classes, params, *extra, **options)
        write_label_png(target, seeds_map)
    publish_zip(work, out)
    return {"images": len(ids)}

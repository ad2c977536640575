"""Seed methods by name (CAMs → pseudo-label seeds with 255 for uncertain pixels) and the seeding stage.

A seed method is ``fn(cams, classes, params)``; methods that also read the class-agnostic proposals of the
``sam_masks`` stage set ``fn.uses_proposals = True`` and take the image's
:class:`~pipeline.proposals.regions.Proposals` as a fourth argument; methods that can use the CAM method's own
background map (stored by methods with a background class) set ``fn.uses_background = True`` and take it as the
keyword ``background`` (None when the CAM method has none); methods whose params may need the image (a CRF) set
``fn.reads_image = lambda params: …`` and take the H×W×3 uint8 image as the keyword ``image`` when it says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.cams.store import CamStore
from pipeline.execution.chunks import LabelJob, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import fingerprint, publish_zip, work_directory
from pipeline.params import SeedParams
from pipeline.proposals.store import ProposalStore
from pipeline.registry import Registry

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


class SeedJob(LabelJob):
    """One image's seeds from its stored CAMs (and proposals, for the methods that read them)."""

    def __init__(
        self, key: str, work: Path, manifest_dir: Path, cams: Path, seeds: SeedParams, proposals: Path
    ) -> None:  # fmt: skip
        super().__init__(key, work)
        self.manifest_dir, self.cams, self.seeds, self.proposals = manifest_dir, cams, seeds, proposals

    def load(self) -> None:
        from pipeline.data.manifest import load_manifest

        manifest = load_manifest(self.manifest_dir)
        self.by_id = manifest.by_id()
        self.store = CamStore(self.cams)
        self.seed_fn = SEED_METHODS.get(self.seeds.method)
        self.params = self.seeds.selected()
        self.regions = ProposalStore(self.proposals) if getattr(self.seed_fn, "uses_proposals", False) else None
        reads_image = getattr(self.seed_fn, "reads_image", lambda _: False)(self.params)
        self.manifest = manifest if reads_image else None  # the images' files, for the methods that read them

    def compute(self, image_id: str) -> None:
        entry = self.by_id.get(image_id)
        if entry is None:
            raise ValueError(f"{self.cams}: image '{image_id}' is not in the dataset manifest")
        maps, classes, background = self.store.read_with_background(image_id)
        if maps.shape[1:] != (entry.height, entry.width):
            raise ValueError(
                f"{self.cams}: CAMs of '{image_id}' are {maps.shape[1:]}, the image is {entry.height}×{entry.width}"
            )
        extra = [self.regions.read(image_id, maps.shape[1:])] if self.regions is not None else []
        options = {"background": background} if getattr(self.seed_fn, "uses_background", False) else {}
        if self.manifest is not None:
            from pipeline.data.loading import load_image

            options["image"] = load_image(self.manifest, entry)
        seeds_map = self.seed_fn(maps, classes, self.params, *extra, **options)
        self.write_label(image_id, seeds_map)


def make_seeds(
    manifest_dir: Path, cams: Path, seeds: SeedParams, out: Path, proposals: Path, execution: ExecutionParams,
    stage: str = "make_seeds",
) -> dict[str, int]:  # fmt: skip
    """One VOC palette PNG seed per image that has CAMs, built on ``execution``'s runner in a resumable work
    directory and published as the zip ``out`` (a :class:`~pipeline.io.LabelSet`).

    ``proposals`` (the ``sam_masks`` store) is opened only by the methods that use it.
    """
    store = CamStore(cams)
    inputs = [store.attributes["inputs_key"], json.dumps(seeds.model_dump(mode="json"), sort_keys=True)]
    if getattr(SEED_METHODS.get(seeds.method), "uses_proposals", False):
        inputs.append(ProposalStore(proposals).attributes["inputs_key"])
    key = fingerprint(*inputs)
    work = work_directory(out, key)
    counts = run_images(stage, SeedJob(key, work, manifest_dir, cams, seeds, proposals), store.ids(), execution)
    publish_zip(work, out)
    return counts

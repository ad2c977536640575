"""Class-agnostic region proposals by name (SAM or superpixels) and the ``sam_masks`` stage that caches them.

A proposal method is a class ``Method(params, device)`` whose instances map an H×W×3 uint8 image to
:class:`~pipeline.proposals.regions.Proposals`. Images are computed in chunks on the runner of ``execution``
(:mod:`pipeline.execution`): one method instance per worker process, and with SAM one per GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.execution.chunks import ImageJob, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import fingerprint, publish_zip, work_directory
from pipeline.params import ProposalParams
from pipeline.proposals.store import ProposalStoreWriter
from pipeline.registry import Registry

# sam imports torch and segment-anything: only when selected.
PROPOSAL_METHODS: Registry = Registry("proposal method", selected_by="proposals.method", loaders={
    "sam": "pipeline.proposals.sam", "superpixels": "pipeline.proposals.superpixels",
})  # fmt: skip


def proposal_inputs_key(manifest_dir: Path, params: ProposalParams) -> str:
    """Identity of what the proposals depend on: the images (via the manifest's digests) and ``proposals.*``."""
    settings = {"method": params.method, "splits": list(params.splits), **params.selected().model_dump(mode="json")}
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, json.dumps(settings, sort_keys=True))


class ProposalJob(ImageJob):
    """One image's proposals into the work store; SAM asks for a GPU worker."""

    def __init__(self, key: str, work: Path, manifest_dir: Path, params: ProposalParams, device: str) -> None:
        super().__init__(key, work)
        self.manifest_dir, self.params, self.device = Path(manifest_dir), params, device
        self.uses_gpu = params.method == "sam"

    def load(self) -> None:
        from pipeline.data.manifest import load_manifest
        from pipeline.device import resolve_device

        self.manifest = load_manifest(self.manifest_dir)
        self.by_id = self.manifest.by_id()
        method_cls = PROPOSAL_METHODS.get(self.params.method)
        self.method = method_cls(self.params.selected(), resolve_device(self.device))
        self.store = ProposalStoreWriter(self.work)

    def done(self, image_id: str) -> bool:
        return ProposalStoreWriter(self.work).has(image_id)

    def compute(self, image_id: str) -> None:
        from pipeline.data.loading import load_image

        entry = self.by_id[image_id]
        proposals = self.method(load_image(self.manifest, entry))
        if proposals.shape != (entry.height, entry.width):
            path = self.manifest.files.location(entry.image)
            raise ValueError(f"{path}: proposals of size {proposals.shape}, image {entry.height}×{entry.width}")
        self.store.write(entry.id, proposals)


def generate_proposals(
    manifest: Manifest, manifest_dir: Path, params: ProposalParams, device: str, out: Path, execution: ExecutionParams
) -> dict:  # fmt: skip
    """Fill the proposal store for ``params.splits`` on ``execution``'s runner, resuming a killed run, then
    publish it as the zip ``out``; ``device`` is resolved on each worker."""
    key = proposal_inputs_key(manifest_dir, params)
    work = work_directory(out, key)
    store = ProposalStoreWriter(
        work, {"method": params.method, "params": params.selected().model_dump(mode="json"), "inputs_key": key,
               "splits": list(params.splits), "levels": ["sub-part", "part", "whole"]},
    )  # fmt: skip
    ids = [entry.id for split in params.splits for entry in manifest.entries(split)]
    counts = run_images("sam_masks", ProposalJob(key, work, manifest_dir, params, device), ids, execution)
    store.finish()
    publish_zip(work, out)
    return counts

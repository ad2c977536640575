"""Class-agnostic region proposals by name (SAM or superpixels) and the ``sam_masks`` stage that caches them.

A proposal method is a class ``Method(params, device)`` whose instances map an H×W×3 uint8 image to
:class:`~pipeline.proposals.regions.Proposals`; ``parallel_on_cpu`` says whether images may be spread over
processes (superpixels) or the model should stay in one process (SAM: one model, GPU when present).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from pipeline.data.manifest import MANIFEST_NAME, Entry, Manifest
from pipeline.io import fingerprint, publish_zip, work_directory
from pipeline.params import ProposalParams
from pipeline.registry import Registry
from pipeline.tracking import progress

PROPOSAL_METHODS: Registry = Registry("proposal method")

from pipeline.proposals import sam as _sam  # noqa: E402,F401  (registers "sam")
from pipeline.proposals import superpixels as _superpixels  # noqa: E402,F401  (registers "superpixels")
from pipeline.proposals.store import ProposalStoreWriter  # noqa: E402

_worker_state: dict = {}


def proposal_inputs_key(manifest_dir: Path, params: ProposalParams) -> str:
    """Identity of what the proposals depend on: the images (via the manifest's digests) and ``proposals.*``."""
    settings = {"method": params.method, "splits": list(params.splits), **params.selected().model_dump(mode="json")}
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, json.dumps(settings, sort_keys=True))


def _attach(manifest: Manifest, method, work: Path) -> None:
    _worker_state.update(manifest=manifest, method=method, store=ProposalStoreWriter(work))


def _init_worker(manifest: Manifest, params: ProposalParams, work: Path) -> None:
    _attach(manifest, PROPOSAL_METHODS.get(params.method)(params.selected(), None), work)


def _propose_and_store(entry: Entry) -> int:
    """Compute one image's proposals and write them into the work store; return the number of masks."""
    from pipeline.data.loading import load_image

    proposals = _worker_state["method"](load_image(_worker_state["manifest"], entry))
    if proposals.shape != (entry.height, entry.width):
        path = _worker_state["manifest"].files.location(entry.image)
        raise ValueError(f"{path}: proposals of size {proposals.shape}, image {entry.height}×{entry.width}")
    _worker_state["store"].write(entry.id, proposals)
    return len(proposals.level)


def _worker_context():
    """fork where the platform has it (workers start without re-importing torch; the parent has run no torch
    op, so no thread pool is copied mid-flight), spawn elsewhere."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _store_all(manifest: Manifest, params: ProposalParams, todo: list[Entry], device, work: Path) -> Iterator[int]:
    """Mask counts of the images of ``todo`` in order, each stored as soon as it is computed."""
    method_cls = PROPOSAL_METHODS.get(params.method)
    workers = params.workers or os.cpu_count() or 1
    if method_cls.parallel_on_cpu and device.type == "cpu" and workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(
            workers, mp_context=_worker_context(), initializer=_init_worker, initargs=(manifest, params, work)
        ) as pool:
            yield from pool.map(_propose_and_store, todo, chunksize=4)
        return
    _attach(manifest, method_cls(params.selected(), device), work)
    for entry in todo:
        yield _propose_and_store(entry)


def generate_proposals(manifest: Manifest, manifest_dir: Path, params: ProposalParams, device, out: Path) -> dict:
    """Fill the proposal store for ``params.splits``, resuming a killed run, then publish it as the zip ``out``."""
    key = proposal_inputs_key(manifest_dir, params)
    work = work_directory(out, key)
    store = ProposalStoreWriter(
        work, {"method": params.method, "params": params.selected().model_dump(mode="json"), "inputs_key": key,
               "splits": list(params.splits), "levels": ["sub-part", "part", "whole"]},
    )  # fmt: skip
    entries = [entry for split in params.splits for entry in manifest.entries(split)]
    todo = [entry for entry in entries if not store.has(entry.id)]
    counts = _store_all(manifest, params, todo, device, work) if todo else iter(())
    masks = sum(progress(counts, total=len(todo), desc="sam_masks"))
    store.finish()
    publish_zip(work, out)
    computed = len(todo)
    return {"images": len(entries), "computed": computed, "resumed": len(entries) - computed,
            "masks_per_image": round(masks / computed, 1) if computed else None}  # fmt: skip

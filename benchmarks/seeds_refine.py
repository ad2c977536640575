"""Benchmarks of the SAM-side stages, each printed as a ratio against a baseline measured in the same run.

- SAMS ms/image at 500×375 with 100 masks (10 whole, 30 part, 60 sub-part ellipses, ~2.3 image areas in all),
  from the decoded atom index and from the zarr store, against threshold seeds on the same CAMs;
- proposal store bytes per image, against the same masks as uncompressed bool arrays;
- ``--resume``: ``sam_masks`` SIGKILLed halfway and resumed, against an uninterrupted run (byte-identical check).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import layout
from pipeline.io import pack_zip
from pipeline.params import SamsSeedParams, ThresholdSeedParams
from pipeline.proposals.regions import Proposals
from pipeline.proposals.store import ProposalStore, ProposalStoreWriter
from pipeline.seeds.sams import sams_seeds
from pipeline.seeds.threshold import threshold_seeds

HEIGHT, WIDTH = 375, 500


def sam_like_proposals(rng: np.random.Generator) -> Proposals:
    """100 elliptic masks in SAM's proportions: 10 whole, 30 part, 60 sub-part."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    masks, levels = [], []
    for level, count, (low, high) in ((2, 10, (60, 130)), (1, 30, (20, 60)), (0, 60, (5, 25))):
        for _ in range(count):
            cy, cx = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
            ry, rx = rng.integers(low, high, size=2)
            masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
            levels.append(level)
    n = len(masks)
    return Proposals.from_masks(np.stack(masks), np.asarray(levels, np.uint8), rng.random(n, dtype=np.float32),
                     rng.random(n, dtype=np.float32))  # fmt: skip


def smooth_cams(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, H, W) CAM-like maps in [0, 1]: one Gaussian blob per class."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    cams = []
    for _ in range(count):
        cy, cx = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
        cams.append(np.exp(-(((yy - cy) / 80.0) ** 2 + ((xx - cx) / 110.0) ** 2)))
    return np.stack(cams).astype(np.float32)


def per_call_ms(fn, repeat: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def sams_speed() -> None:
    rng = np.random.default_rng(0)
    proposals, cams, classes = sam_like_proposals(rng), smooth_cams(rng, 3), [2, 7, 14]
    with tempfile.TemporaryDirectory() as tmp:
        writer = ProposalStoreWriter(Path(tmp) / "store", {})
        writer.write("image", proposals)
        pack_zip(Path(tmp) / "store", Path(tmp) / "store.zip")
        store = ProposalStore(Path(tmp) / "store.zip")
        regions = store.read("image")
        params = SamsSeedParams()
        sams = per_call_ms(lambda: sams_seeds(cams, classes, params, regions))
        with_read = per_call_ms(lambda: sams_seeds(cams, classes, params, store.read("image")))
        baseline = per_call_ms(lambda: threshold_seeds(cams, classes, ThresholdSeedParams()))
    print(
        f"SAMS at {WIDTH}×{HEIGHT}, {len(proposals.level)} masks ({regions.membership.shape[1]} atoms): "
        f"{sams:.1f} ms/image; with the zarr read {with_read:.1f} ms; threshold seeds {baseline:.1f} ms; "
        f"ratio {sams / baseline:.2f}"
    )


def proposal_store_size() -> None:
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        writer = ProposalStoreWriter(Path(tmp) / "store", {})
        raw = 0
        for i in range(8):
            proposals = sam_like_proposals(rng)
            writer.write(f"image{i}", proposals)
            raw += proposals.membership.shape[0] * HEIGHT * WIDTH  # dense bool masks
        pack_zip(Path(tmp) / "store", Path(tmp) / "store.zip")
        stored = (Path(tmp) / "store.zip").stat().st_size
    print(
        f"proposal store, 100 SAM-like masks at {WIDTH}×{HEIGHT}: {stored / 8 / 1e3:.1f} kB/image; "
        f"bool masks {raw / 8 / 1e3:.1f} kB/image; ratio {stored / raw:.4f}"
    )
    if layout.PROPOSALS.is_file():
        store = ProposalStore(layout.PROPOSALS)
        ids = store.ids()
        masks = sum(len(store.read(i).level) for i in ids[:200]) / min(len(ids), 200)
        print(
            f"proposal store of the demo ({store.attributes['method']}): "
            f"{layout.PROPOSALS.stat().st_size / len(ids) / 1e3:.1f} kB/image, {masks:.0f} masks/image"
        )


def stored_images(work_root: Path) -> int:
    return sum(1 for store in work_root.glob("proposals.zarr.zip-*") for p in store.iterdir()
               if p.is_dir() and (p / "zarr.json").is_file())  # fmt: skip


def sam_masks_resume() -> None:
    """Run sam_masks whole, then kill a run halfway and resume it; the published bytes must be identical."""
    command = [sys.executable, "-m", "stages.sam_masks"]
    reference = layout.PROPOSALS.read_bytes() if layout.PROPOSALS.is_file() else None
    layout.PROPOSALS.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    full = time.perf_counter() - start
    uninterrupted = layout.PROPOSALS.read_bytes()
    total = len(ProposalStore(layout.PROPOSALS).ids())
    layout.PROPOSALS.unlink()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while stored_images(layout.ARTIFACTS / ".work") < total // 2 and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = stored_images(layout.ARTIFACTS / ".work")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    resumed = time.perf_counter() - start
    identical = layout.PROPOSALS.read_bytes() == uninterrupted and (reference is None or reference == uninterrupted)
    print(
        f"sam_masks: uninterrupted {full:.1f} s; killed after {done}/{total} images, resumed in {resumed:.1f} s "
        f"(ratio {resumed / full:.2f}); store byte-identical: {identical}"
    )

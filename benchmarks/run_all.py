"""Pipeline benchmarks (run from the repository root after `make repro`; `make bench`).

- no-op ``dvc repro`` wall time of the full pipeline, against ``dvc version`` (DVC's own start-up) as baseline;
- the same on a VOC-sized dataset, and the time to notice one changed mask (benchmarks/input_files.py);
- CAM store bytes against the float32 ``.npy`` bytes of the same CAMs;
- SAMS speed and proposal store size (benchmarks/seeds_refine.py);
- sam_masks and refine in-process against a 2-worker local Dask cluster, and the per-chunk overhead
  (benchmarks/scale_out.py);
- superpixels + SAMS on 500×375 photographs: masks, seconds, peak memory (benchmarks/proposals_real.py);
- with ``--resume``: ``sam_masks`` killed halfway and resumed, against an uninterrupted run;
- with ``--cold``: a cold ``make repro`` in a fresh clone (environment set-up included), against a warm rerun.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import input_files, proposals_real, scale_out, seeds_refine
from pipeline import layout
from pipeline.cams.store import CamStore

DVC = str(Path(sys.executable).parent / "dvc")


def timed(cmd: list[str], cwd: Path | None = None, repeat: int = 5) -> float:
    """Median wall time of ``cmd`` over ``repeat`` runs (it must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def noop_repro(rounds: int = 11) -> None:
    """No-op ``dvc repro`` against ``dvc version``, interleaved (one of each per round) so that machine noise
    hits both alike; medians over the rounds."""
    ran = re.findall(r"Running stage '([^']+)'", subprocess.run([DVC, "repro"], capture_output=True, text=True).stdout)
    if ran != ["input_files"]:  # it looks at the files from outside on every repro; nothing else may run
        raise SystemExit(f"the pipeline was not up to date (ran {', '.join(ran)}): time it again")
    pairs = [(timed([DVC, "version"], repeat=1), timed([DVC, "repro"], repeat=1)) for _ in range(rounds)]
    baseline = statistics.median(version for version, _ in pairs)
    noop = statistics.median(repro for _, repro in pairs)
    above = statistics.median(repro - version for version, repro in pairs)
    print(
        f"no-op dvc repro: {noop:.2f} s; dvc version: {baseline:.2f} s (medians of {rounds} interleaved rounds); "
        f"ratio {noop / baseline:.2f}, {above:.2f} s above"
    )


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def cam_store_size() -> None:
    store = CamStore(layout.CAMS)
    zarr_bytes = layout.CAMS.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        for image_id in store.ids():
            cams, _ = store.read(image_id)
            np.save(Path(tmp) / f"{image_id}.npy", cams.astype(np.float32))
        npy_bytes = directory_bytes(Path(tmp))
    print(
        f"CAM store: {zarr_bytes / 1e6:.2f} MB for {len(store.ids())} images; float32 .npy: {npy_bytes / 1e6:.2f} MB; "
        f"ratio {zarr_bytes / npy_bytes:.3f}"
    )


def cold_repro() -> None:
    repo = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        start = time.perf_counter()
        subprocess.run(["make", "repro"], cwd=clone, check=True, capture_output=True, env=env)
        cold = time.perf_counter() - start
        shutil.rmtree(clone / "artifacts")
        start = time.perf_counter()
        subprocess.run(["make", "repro"], cwd=clone, check=True, capture_output=True, env=env)
        warm = time.perf_counter() - start
    print(
        f"cold make repro (fresh clone, venv set-up included): {cold:.1f} s; rerun with the venv and DVC cache "
        f"present: {warm:.1f} s; ratio {cold / warm:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", action="store_true", help="also time a cold `make repro` in a fresh clone")
    parser.add_argument("--resume", action="store_true", help="also kill and resume sam_masks (rewrites its output)")
    args = parser.parse_args()
    noop_repro()
    input_files.main([])
    cam_store_size()
    seeds_refine.proposal_store_size()
    seeds_refine.sams_speed()
    scale_out.main()
    proposals_real.proposals_real()
    if args.resume:
        seeds_refine.sam_masks_resume()
    if args.cold:
        cold_repro()


if __name__ == "__main__":
    main()

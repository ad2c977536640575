"""The per-image stages in this process against a 2-worker local Dask cluster, as ratios in one run.

    python -m benchmarks.scale_out [--images 48] [--size 256]

- ``sam_masks`` (superpixels) and ``refine`` (dense CRF, IRN preset) images/s on a synthetic dataset: in-process
  and on a warm 2-worker ``LocalCluster`` reached by its scheduler address, interleaved, medians of 3 rounds (the
  cluster's start-up is printed apart), the published stores checked byte-identical;
- the Dask path's overhead per chunk: chunks of one image of a job that computes nothing, on the cluster
  against in-process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.cams.store import CamStoreWriter
from pipeline.data.datasets import prepare_dataset
from pipeline.execution.chunks import ImageJob, local_cluster_options, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import publish_zip, write_label_png
from pipeline.params import CrfRefineParams, DataParams, ProposalParams, RefineParams, ThresholdSeedParams
from pipeline.proposals import generate_proposals
from pipeline.refine import refine_labels
from pipeline.seeds.threshold import threshold_seeds


class NoOpJob(ImageJob):
    """Computes nothing: what is left of a chunk's time is the runner's."""

    def load(self) -> None:
        pass

    def done(self, image_id: str) -> bool:
        return False

    def compute(self, image_id: str) -> None:
        pass


def blob_cams(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centres = rng.integers(0, size, size=(count, 2))
    return np.stack([np.exp(-(((yy - y) / (size / 5)) ** 2 + ((xx - x) / (size / 4)) ** 2)) for y, x in centres])


def cams_and_seeds(manifest, root: Path) -> tuple[Path, Path]:
    """A CAM store of Gaussian blobs for the images' classes and their threshold seeds (what refine reads)."""
    rng = np.random.default_rng(0)
    cams_work, seeds_work = root / "cams-work", root / "seeds-work"
    writer = CamStoreWriter(cams_work, {"classes": list(manifest.classes), "inputs_key": "benchmark"})
    seeds_work.mkdir()
    for entry in manifest.entries("train"):
        classes = list(entry.labels)
        maps = blob_cams(rng, len(classes), entry.height).astype(np.float32)
        writer.write(entry.id, maps, classes)
        write_label_png(seeds_work / f"{entry.id}.png", threshold_seeds(maps, classes, ThresholdSeedParams()))
    writer.finish()
    publish_zip(cams_work, root / "cams.zarr.zip")
    publish_zip(seeds_work, root / "seeds.zip")
    return root / "cams.zarr.zip", root / "seeds.zip"


def warm_imports() -> None:
    """What the timed stages' workers import (the methods' modules load on first use)."""
    from pipeline.proposals import superpixels  # noqa: F401
    from pipeline.refine import crf  # noqa: F401


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(images: int = 48, size: int = 256, rounds: int = 3) -> None:
    """Medians of ``rounds`` interleaved in-process and cluster runs (this machine's speed drifts)."""
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = DataParams.model_validate({"synthetic": {"num_train": images, "num_val": 1, "image_size": size}})
        manifest = prepare_dataset(data, root / "dataset")
        cams, seeds = cams_and_seeds(manifest, root)
        proposals = ProposalParams(splits=("train",))
        refine = RefineParams(method="crf", crf=CrfRefineParams(preset="irn"))

        def stages(execution: ExecutionParams, tag: str) -> dict[str, float]:
            out = root / tag
            return {
                "sam_masks": timed(lambda: generate_proposals(manifest, root / "dataset", proposals, "cpu",
                                                              out / "proposals.zarr.zip", execution)),
                "refine": timed(lambda: refine_labels(root / "dataset", cams, seeds, refine, out / "refined.zip",
                                                      execution)),
            }  # fmt: skip

        start = time.perf_counter()
        options = local_cluster_options(ExecutionParams(workers=2))
        with LocalCluster(**options) as cluster, Client(cluster) as client:
            client.run(warm_imports)
            startup = time.perf_counter() - start
            address = ExecutionParams(runner=cluster.scheduler_address, chunk_size=4)
            rounds = [(stages(ExecutionParams(), "serial"), stages(address, "cluster")) for _ in range(rounds)]
            serial = {name: statistics.median(one[name] for one, _ in rounds) for name in rounds[0][0]}
            cluster_times = {name: statistics.median(two[name] for _, two in rounds) for name in rounds[0][1]}
            chunks = 200
            noop_ids = [f"noop{i:04d}" for i in range(chunks)]
            overhead = {}
            for runner in ("in-process", cluster.scheduler_address):
                job = NoOpJob(f"noop-{runner}", root / f"noop-{len(overhead)}")
                execution = ExecutionParams(runner=runner, chunk_size=1)
                overhead[runner] = timed(lambda: run_images("noop", job, noop_ids, execution)) / chunks  # noqa: B023
            in_process, dask_chunk = overhead["in-process"], overhead[cluster.scheduler_address]
        for name, store in (("sam_masks", "proposals.zarr.zip"), ("refine", "refined.zip")):
            same = (root / "serial" / store).read_bytes() == (root / "cluster" / store).read_bytes()
            rate, dask_rate = images / serial[name], images / cluster_times[name]
            print(f"{name} ({'superpixels' if name == 'sam_masks' else 'dense CRF, IRN preset'}, {images} images of "
                  f"{size}×{size}): in-process {rate:.2f} images/s, 2-worker LocalCluster {dask_rate:.2f} images/s; "
                  f"ratio {dask_rate / rate:.2f}; byte-identical: {same}")  # fmt: skip
        print(f"LocalCluster start-up (2 workers, imports warmed): {startup:.1f} s")
        print(f"per-chunk overhead, {chunks} no-op chunks of 1 image: in-process {1000 * in_process:.2f} ms, "
              f"Dask {1000 * dask_chunk:.2f} ms; ratio {dask_chunk / in_process:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.images, arguments.size, arguments.rounds)

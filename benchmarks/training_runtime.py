"""Segmenter training throughput under each training runtime setting, as ratios to fp32 without loader workers.

    python -m benchmarks.training_runtime [--images 96] [--size 96] [--rounds 3]

One epoch of ``train_segmenter`` on ground truth of a synthetic dataset, per setting: DataLoader workers 0 vs 1
(``loader_workers``) and precision fp32 vs bf16 (``precision``), interleaved, medians of ``rounds``, on this
machine's device; and how far the weights of the two fp32 runs are apart (workers resample on one thread).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipeline.data.datasets import prepare_dataset
from pipeline.device import TrainingRuntime, loader_options, resolve_device
from pipeline.params import DataParams, SegmenterParams
from pipeline.segmentation.training import train_segmenter

SETTINGS = {"fp32, 0 workers": (0, "fp32"), "fp32, 1 worker": (1, "fp32"), "bf16, 0 workers": (0, "bf16")}


def main(images: int = 96, size: int = 96, rounds: int = 3) -> None:
    device = resolve_device("auto")
    params = SegmenterParams(epochs=1, batch_size=16, crop_size=size, min_steps=0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data = DataParams(synthetic={"num_train": images, "num_val": 4, "image_size": size})
        manifest = prepare_dataset(data, root / "dataset")
        seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for round_ in range(rounds):
            for name, (workers, precision) in SETTINGS.items():
                runtime = TrainingRuntime(loader_options(workers, device), precision)
                out = root / f"{name.replace(', ', '-').replace(' ', '')}-{round_}"
                start = time.perf_counter()
                train_segmenter(manifest, root / "dataset", None, params, 0, device, out, "bench", runtime)
                seconds[name].append(time.perf_counter() - start)
        plain, parallel = (torch.load(root / f"{name}-0/model.pt", weights_only=True)["state_dict"]
                           for name in ("fp32-0workers", "fp32-1worker"))  # fmt: skip
        learned = [key for key in plain if "running_" not in key and "num_batches" not in key]  # not BN statistics
        apart = max((plain[key].float() - parallel[key].float()).abs().max().item() for key in learned)
    base = statistics.median(seconds["fp32, 0 workers"])
    print(f"train_segmenter, one epoch of {images} images of {size} px, batch 16, on {device} (median of {rounds}):")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name}: {images / median:.1f} images/s; ratio to fp32, 0 workers {base / median:.2f}")
    print(f"  fp32 learned weights with 0 and 1 loader workers differ by at most {apart:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.images, args.size, args.rounds)

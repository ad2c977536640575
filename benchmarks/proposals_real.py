"""Superpixel proposals and SAMS seeds on VOC-sized photographs: masks, seconds and peak memory per image.

The photographs are scikit-image's bundled samples resized to 500×375. Two settings run in the same process:
the proposal sizes relative to the image (``reference_size: 64``, the default) and, as the baseline, the demo's
64 px values taken as pixels (``reference_size: null``, what every image got before sizes were relative). Peak
memory is the largest allocation high-water mark of one image (tracemalloc sees numpy and scikit-image).

    .venv/bin/python -m benchmarks.proposals_real
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np
from PIL import Image
from skimage import data

from pipeline.params import SamsSeedParams, SuperpixelProposalParams
from pipeline.proposals.superpixels import SuperpixelProposals
from pipeline.seeds.sams import sams_seeds

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
WIDTH, HEIGHT = 500, 375


def photographs() -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(getattr(data, name)()).resize((WIDTH, HEIGHT), Image.BILINEAR))
            for name in PHOTOGRAPHS]  # fmt: skip


def blob_cams(count: int, seed: int) -> np.ndarray:
    """(count, H, W) CAM-like maps: one Gaussian blob per class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    centres = rng.integers((0, 0), (HEIGHT, WIDTH), size=(count, 2))
    return np.stack([np.exp(-(((yy - cy) / 80.0) ** 2 + ((xx - cx) / 110.0) ** 2)) for cy, cx in centres]).astype(
        np.float32
    )


def measure(fn) -> tuple[object, float, float]:
    """(result, seconds, peak MB) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return result, seconds, peak


def run_setting(reference_size: int | None, images: list[np.ndarray]) -> dict[str, float]:
    method = SuperpixelProposals(SuperpixelProposalParams(reference_size=reference_size))
    rows = []
    for index, image in enumerate(images):
        proposals, seconds, peak = measure(lambda image=image: method(image).canonical())
        cams = blob_cams(2, index)
        _, sams_seconds, sams_peak = measure(lambda p=proposals, c=cams: sams_seeds(c, [0, 1], SamsSeedParams(), p))
        rows.append((len(proposals.level), seconds, peak, sams_seconds, sams_peak))
    columns = list(zip(*rows, strict=True))
    names = ("masks", "proposal_s", "proposal_peak_mb", "sams_s", "sams_peak_mb")
    return {name: statistics.mean(values) for name, values in zip(names, columns, strict=True)} | {
        "masks_min": min(columns[0]), "masks_max": max(columns[0]),
    }  # fmt: skip


def proposals_real() -> None:
    images = photographs()
    relative = run_setting(64, images)
    absolute = run_setting(None, images)
    for label, row in (("relative sizes (default)", relative), ("64 px sizes as pixels (baseline)", absolute)):
        print(
            f"superpixels + SAMS at {WIDTH}×{HEIGHT}, {label}: {row['masks']:.0f} masks/image "
            f"({row['masks_min']}–{row['masks_max']}); proposals {row['proposal_s']:.2f} s, peak "
            f"{row['proposal_peak_mb']:.0f} MB; SAMS {row['sams_s'] * 1e3:.1f} ms, peak {row['sams_peak_mb']:.0f} MB"
        )
    print(
        "ratios relative / baseline: masks {:.3f}, proposal time {:.2f}, proposal peak {:.2f}, SAMS time {:.4f}, "
        "SAMS peak {:.4f}".format(
            *(relative[k] / absolute[k] for k in ("masks", "proposal_s", "proposal_peak_mb", "sams_s", "sams_peak_mb"))
        )  # fmt: skip
    )


if __name__ == "__main__":
    proposals_real()

"""What watching the dataset files costs on a VOC-sized tree, against DVC's own start-up, as ratios in one run.

    python -m benchmarks.input_files [--train 10582] [--val 1449] [--rounds 5]

- A synthetic VOC layout of ``--train`` + ``--val`` images and masks (small files: what is measured is the
  per-file cost; hashing a file costs its bytes once, see the throughput line) in a throw-away DVC project
  with the pipeline's dvc.yaml, ``dvc repro prepare_data`` run once.
- No-op ``dvc repro prepare_data`` (code_closures, check_params, input_files and prepare_data checked;
  input_files runs, stats every file, hashes none) against ``dvc version``, interleaved, medians of the rounds.
- One mask changed: ``dvc repro input_files`` (one file hashed again) then ``dvc status prepare_data``, the time
  until DVC knows prepare_data is stale, against ``dvc version``.
- In this process: ``write_input_files`` cold (every file hashed) and warm (a stat per file), per 10,000 files,
  which gives the cost on COCO's 123,287 images (246,574 files).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline.input_files import DigestCache, write_input_files
from pipeline.io import write_label_png
from pipeline.params import PipelineParams
from pipeline.schema import read_yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).parent / "dvc")


def run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def voc_tree(root: Path, train: int, val: int) -> list[str]:
    """VOC layout: 48 × 48 JPEGs, palette masks with one object of a class each, the two split lists."""
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"{2007 + i // 100_000}_{i % 100_000:06d}" for i in range(train + val)]
    pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    for i, image_id in enumerate(ids):
        Image.fromarray(np.roll(pixels, i, axis=0)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        mask = np.zeros((48, 48), dtype=np.uint8)
        mask[8:30, 10:34] = 1 + i % 20
        write_label_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids[:train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[train:]) + "\n")
    return ids


def project(directory: Path, voc: Path) -> Path:
    """The pipeline's sources and dvc.yaml in a fresh git + DVC repository reading ``voc``."""
    directory.mkdir()
    for name in ("dvc.yaml", "pipeline", "stages", "prompts"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    params = read_yaml((REPO / "params.yaml").read_text())
    params["data"].update(source="voc", voc={**params["data"]["voc"], "root": str(voc)})
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy2(REPO / ".dvcignore", directory / ".dvcignore")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=directory, check=True, capture_output=True)
    return directory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10582)
    parser.add_argument("--val", type=int, default=1449)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        voc = Path(tmp) / "VOC2012"
        start = time.perf_counter()
        ids = voc_tree(voc, args.train, args.val)
        files = 2 * len(ids) + 2
        written = time.perf_counter() - start
        print(f"VOC-sized tree: {len(ids)} images and masks ({files} files) written in {written:.0f} s")

        params = PipelineParams.model_validate({"data": {"source": "voc", "voc": {"root": str(voc)}}})
        cache = Path(tmp) / "cache.json"
        start = time.perf_counter()
        write_input_files(params, Path(tmp) / "inputs", DigestCache(cache))
        cold = time.perf_counter() - start
        warm = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            assert write_input_files(params, Path(tmp) / "inputs", DigestCache(cache)) == 0
            warm.append(time.perf_counter() - start)
        megabytes = sum(path.stat().st_size for path in voc.rglob("*") if path.is_file()) / 1e6
        sample = (voc / "JPEGImages" / f"{ids[0]}.jpg").read_bytes() * 20000
        start = time.perf_counter()
        hashlib.sha256(sample).hexdigest()
        throughput = len(sample) / 1e6 / (time.perf_counter() - start)
        per_10k_cold, per_10k_warm = cold / files * 1e4, statistics.median(warm) / files * 1e4
        print(f"write_input_files in-process: cold {cold:.2f} s ({megabytes:.0f} MB hashed), warm "
              f"{statistics.median(warm):.2f} s (median of {args.rounds}); per 10,000 files: cold "
              f"{per_10k_cold:.2f} s, warm {per_10k_warm:.3f} s; SHA-256 at {throughput:.0f} MB/s")  # fmt: skip
        coco = 246_574
        print(f"  → COCO 2014 ({coco:,} files, about 19.6 GB): warm about {per_10k_warm * coco / 1e4:.1f} s a repro; "
              f"cold, once, about {per_10k_cold * coco / 1e4 + 19_600 / throughput:.0f} s")  # fmt: skip

        work = project(Path(tmp) / "project", voc)
        start = time.perf_counter()
        subprocess.run([DVC, "repro", "prepare_data"], cwd=work, check=True, capture_output=True)
        first = time.perf_counter() - start
        print(f"first dvc repro prepare_data (validates every image, hashes every file): {first:.0f} s")
        pairs = [(run([DVC, "version"], work), run([DVC, "repro", "prepare_data"], work)) for _ in range(args.rounds)]
        version = statistics.median(v for v, _ in pairs)
        noop = statistics.median(r for _, r in pairs)
        print(f"no-op dvc repro prepare_data: {noop:.2f} s; dvc version: {version:.2f} s (medians of {args.rounds} "
              f"interleaved rounds); ratio {noop / version:.2f}, {noop - version:.2f} s above")  # fmt: skip

        mask = voc / "SegmentationClassAug" / f"{ids[len(ids) // 2]}.png"
        original = mask.read_bytes()
        notice = []
        for round_ in range(args.rounds):
            mask.write_bytes(original + bytes([round_ + 1]))
            seconds = run([DVC, "repro", "input_files"], work)
            start = time.perf_counter()
            status = subprocess.run([DVC, "status", "prepare_data"], cwd=work, capture_output=True, text=True)
            seconds += time.perf_counter() - start
            assert "changed deps" in status.stdout and "artifacts/inputs/prepare_data.json" in status.stdout
            notice.append(seconds)
        print(f"one mask changed → prepare_data stale (dvc repro input_files + dvc status): "
              f"{statistics.median(notice):.2f} s; ratio to dvc version {statistics.median(notice) / version:.2f}")


if __name__ == "__main__":
    main()

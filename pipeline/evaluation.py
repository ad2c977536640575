"""Evaluation of CAMs and seeds against ground truth: metrics JSON, DVC plot data, figures.

CAMs are scored at the GT-free background pad from params and, beside it, at the pad that a sweep over the
ground truth finds best — that second figure is labelled ``gt_tuned`` because it looks at the answers.
Seeds are scored twice: with ignored pixels (255) counted as background (IRN's convention) and on their
confident pixels only, with the coverage of those pixels.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.cam_store import CamStore  # noqa: E402
from pipeline.data.datasets import Manifest  # noqa: E402
from pipeline.data.loading import load_image  # noqa: E402
from pipeline.io import atomic_path, fresh_directory, read_label_png, write_json  # noqa: E402
from pipeline.metrics import confusion_matrix, scores, summary  # noqa: E402
from pipeline.params import EvaluateParams  # noqa: E402
from pipeline.seeds.threshold import argmax_with_background  # noqa: E402
from pipeline.tracking import progress, report  # noqa: E402
from pipeline.voc import IGNORE_INDEX, voc_palette  # noqa: E402


def sweep_values(params: EvaluateParams) -> list[float]:
    count = int(round((params.sweep.stop - params.sweep.start) / params.sweep.step)) + 1
    return [round(params.sweep.start + i * params.sweep.step, 6) for i in range(count)]


def evaluate_pseudo_labels(
    manifest: Manifest, cams: Path, seeds: Path, params: EvaluateParams, labels: dict[str, str], out: Path
) -> dict[str, Any]:
    """Score CAMs and seeds of every image in the CAM store; write metrics, plots and the overlay grid."""
    store = CamStore(cams)
    ids = store.ids()
    by_id = {e.id: e for entries in manifest.splits.values() for e in entries}
    n = manifest.num_classes + 1
    pads = sweep_values(params)
    cam_conf = np.zeros((n, n), dtype=np.int64)
    sweep_conf = np.zeros((len(pads), n, n), dtype=np.int64)
    seed_conf = np.zeros((n, n), dtype=np.int64)
    seed_confident_conf = np.zeros((n, n), dtype=np.int64)
    labelled, covered = 0, 0
    for image_id in progress(ids, total=len(ids), desc="evaluate"):
        entry = by_id[image_id]
        truth = read_label_png(manifest.mask_path(entry))
        maps, classes = store.read(image_id)
        seed_path = Path(seeds) / f"{image_id}.png"
        if not seed_path.is_file():
            raise FileNotFoundError(f"{seed_path}: seed missing for image '{image_id}'")
        seed = read_label_png(seed_path)
        if seed.shape != truth.shape:
            raise ValueError(f"{seed_path}: seed size {seed.shape} does not match mask {truth.shape}")
        cam_conf += confusion_matrix(argmax_with_background(maps, classes, params.cam_bg_pad), truth, n)
        for i, pad in enumerate(pads):
            sweep_conf[i] += confusion_matrix(argmax_with_background(maps, classes, pad), truth, n)
        seed_conf += confusion_matrix(np.where(seed == IGNORE_INDEX, 0, seed).astype(np.uint8), truth, n)
        seed_confident_conf += confusion_matrix(seed, truth, n)
        valid = truth != IGNORE_INDEX
        labelled += int(valid.sum())
        covered += int((valid & (seed != IGNORE_INDEX)).sum())

    curve = [summary(c)["miou"] for c in sweep_conf]
    best = int(np.nanargmax(curve))
    metrics = {
        "split": sorted({s for s, es in manifest.splits.items() for e in es if e.id in set(ids)}),
        "images": len(ids),
        "cam": {
            "method": labels.get("cam", ""),
            "gt_free": {"bg_pad": params.cam_bg_pad, **summary(cam_conf)},
            "gt_tuned": {
                "bg_pad": pads[best],
                **summary(sweep_conf[best]),
                "note": "background pad chosen by a sweep against ground truth",
            },
        },  # fmt: skip
        "seeds": {
            "method": labels.get("seeds", ""),
            **summary(seed_conf),
            "confident": {**summary(seed_confident_conf), "coverage": covered / max(labelled, 1)},
        },
    }
    _write_outputs(out, manifest, metrics, cam_conf, seed_conf, pads, curve, ids, store, seeds, params)
    report(
        "Pseudo-label quality",
        [
            {"source": "CAM (GT-free)", "bg_pad": params.cam_bg_pad, **summary(cam_conf)},
            {"source": "CAM (GT-tuned)", "bg_pad": pads[best], **summary(sweep_conf[best])},
            {"source": f"seeds ({labels.get('seeds', '')})", "bg_pad": "-", **summary(seed_conf)},
        ],
        notes=f"{len(ids)} images; seed coverage {metrics['seeds']['confident']['coverage']:.3f}",
    )
    return metrics


def _write_outputs(out, manifest, metrics, cam_conf, seed_conf, pads, curve, ids, store, seeds, params) -> None:
    out = fresh_directory(out)
    write_json(out / "metrics.json", metrics)
    names = ["background", *manifest.classes]
    cam_iou, seed_iou = scores(cam_conf)["iou"], scores(seed_conf)["iou"]
    with atomic_path(out / "per_class_iou.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "cam_iou", "seeds_iou"])
        for name, cam_value, seed_value in zip(names, cam_iou, seed_iou, strict=True):
            writer.writerow([name, *("" if np.isnan(v) else f"{v:.6f}" for v in (cam_value, seed_value))])
    with atomic_path(out / "threshold_curve.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bg_pad", "miou"])
        writer.writerows([[pad, f"{value:.6f}"] for pad, value in zip(pads, curve, strict=True)])
    _plot_confusion(out / "confusion_seeds.png", seed_conf, names, "Seeds: confusion (row-normalised)")
    _plot_confusion(out / "confusion_cam.png", cam_conf, names, "CAM (GT-free pad): confusion (row-normalised)")
    _plot_overlay(out / "overlay.png", manifest, ids[: params.overlay_images], store, Path(seeds), params)


def _plot_confusion(path: Path, confusion: np.ndarray, names: list[str], title: str) -> None:
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(9, 8))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_overlay(path: Path, manifest: Manifest, ids: list[str], store: CamStore, seeds: Path, params) -> None:
    """Grid: image | ground truth | CAM (max over classes, on the image) | seed."""
    by_id = {e.id: e for entries in manifest.splits.values() for e in entries}
    palette = voc_palette()
    fig, axes = plt.subplots(len(ids), 4, figsize=(8, 2 * len(ids)), squeeze=False)
    for row, image_id in enumerate(ids):
        entry = by_id[image_id]
        image = load_image(manifest, entry)
        maps, classes = store.read(image_id)
        heat = plt.get_cmap("jet")(maps.max(axis=0))[..., :3]
        panels = [
            image,
            palette[read_label_png(manifest.mask_path(entry))],
            (0.5 * image / 255.0 + 0.5 * heat),
            palette[read_label_png(seeds / f"{image_id}.png")],
        ]
        for col, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "CAM", "seed"), strict=True)):
            axes[row, col].imshow(panel)
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
        names = ", ".join(manifest.classes[c] for c in classes)
        axes[row, 0].text(0, -2, f"{image_id}: {names}", fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

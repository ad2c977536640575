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

from pipeline.cams.store import CamStore  # noqa: E402
from pipeline.data.loading import load_image  # noqa: E402
from pipeline.data.manifest import Manifest  # noqa: E402
from pipeline.io import LabelSet, atomic_path  # noqa: E402
from pipeline.metrics import confusion_matrix, scores, summary  # noqa: E402
from pipeline.params import EvaluateParams  # noqa: E402
from pipeline.tracking import progress, report  # noqa: E402
from pipeline.voc import IGNORE_INDEX, blend_labels, voc_palette  # noqa: E402


def sweep_values(params: EvaluateParams) -> list[float]:
    count = int(round((params.sweep.stop - params.sweep.start) / params.sweep.step)) + 1
    return [round(params.sweep.start + i * params.sweep.step, 6) for i in range(count)]


def evaluate_pseudo_labels(
    manifest: Manifest,
    cams: Path,
    label_sets: dict[str, Path],
    params: EvaluateParams,
    methods: dict[str, str],
    out: Path,
) -> dict[str, Any]:
    """Score the CAMs and each label set (name → :class:`~pipeline.io.LabelSet` path, e.g. the seeds) on the
    CAM store's images.

    Returns the metrics and writes ``per_class_iou.csv``, ``threshold_curve.csv``, confusion matrices and the
    overlay grid into ``out`` (a staging directory the stage publishes with ``metrics.json`` once everything is
    scored); ``methods`` names the method behind each source for the record.
    """
    store = CamStore(cams)
    ids = store.ids()
    by_id = manifest.by_id()
    sets = {name: LabelSet(path) for name, path in label_sets.items()}
    n = manifest.num_classes + 1
    pads = sweep_values(params)
    cam_conf = np.zeros((n, n), dtype=np.int64)
    own_conf = np.zeros((n, n), dtype=np.int64) if store.has_background else None
    sweep_conf = np.zeros((len(pads), n, n), dtype=np.int64)
    label_conf = {name: np.zeros((n, n), dtype=np.int64) for name in label_sets}
    confident_conf = {name: np.zeros((n, n), dtype=np.int64) for name in label_sets}
    covered = dict.fromkeys(label_sets, 0)
    labelled = 0
    for image_id in progress(ids, total=len(ids), desc="evaluate"):
        truth = manifest.read_mask(by_id[image_id])
        maps, classes, background = store.read_with_background(image_id)
        # argmax over (constant pad, CAMs), ties to background: the class argmax is computed once for all pads.
        # An image kept as a negative (data.no_foreground: keep) has no CAM: all background.
        peak = maps.max(axis=0, initial=0.0)
        lookup = np.asarray([0] + [c + 1 for c in classes], dtype=np.uint8)
        winner = lookup[maps.argmax(axis=0) + 1] if classes else np.zeros(truth.shape, dtype=np.uint8)
        cam_conf += confusion_matrix(np.where(peak > params.cam_bg_pad, winner, 0).astype(np.uint8), truth, n)
        if own_conf is not None:  # the method's own background map against its class maps (ties to background)
            own_conf += confusion_matrix(np.where(peak > background, winner, 0).astype(np.uint8), truth, n)
        for i, pad in enumerate(pads):
            sweep_conf[i] += confusion_matrix(np.where(peak > pad, winner, 0).astype(np.uint8), truth, n)
        valid = truth != IGNORE_INDEX
        labelled += int(valid.sum())
        for name, label_set in sets.items():
            label = label_set.read(image_id, truth.shape)
            label_conf[name] += confusion_matrix(np.where(label == IGNORE_INDEX, 0, label).astype(np.uint8), truth, n)
            confident_conf[name] += confusion_matrix(label, truth, n)
            covered[name] += int((valid & (label != IGNORE_INDEX)).sum())

    curve = [summary(c)["miou"] for c in sweep_conf]
    best = int(np.nanargmax(curve)) if not np.isnan(curve).all() else 0
    ids_set = set(ids)
    metrics: dict[str, Any] = {
        "split": sorted({s for s, es in manifest.splits.items() if any(e.id in ids_set for e in es)}),
        "images": len(ids),
        "cam": {
            "method": methods.get("cam", ""),
            "backbone": store.attributes.get("backbone", ""),
            "gt_free": {"bg_pad": params.cam_bg_pad, **summary(cam_conf)},
            "gt_tuned": {
                "bg_pad": pads[best],
                **summary(sweep_conf[best]),
                "note": "background pad chosen by a sweep against ground truth",
            },
        },
    }
    rows = [
        {"source": "CAM (GT-free)", "bg_pad": params.cam_bg_pad, **summary(cam_conf)},
        {"source": "CAM (GT-tuned)", "bg_pad": pads[best], **summary(sweep_conf[best])},
    ]
    if own_conf is not None:
        metrics["cam"]["own_background"] = {**summary(own_conf), "note": "argmax over the method's background map"}
        rows.append({"source": "CAM (own background)", "bg_pad": "model", **summary(own_conf)})
    for name in label_sets:
        coverage = covered[name] / max(labelled, 1)
        metrics[name] = {
            "method": methods.get(name, ""),
            **summary(label_conf[name]),
            "confident": {**summary(confident_conf[name]), "coverage": coverage},
        }
        rows.append({"source": f"{name} ({methods.get(name, '')})", "bg_pad": "-", **summary(label_conf[name])})
    out.mkdir(parents=True, exist_ok=True)
    names = ["background", *manifest.classes]
    per_class = {"cam": scores(cam_conf)["iou"], **{name: scores(c)["iou"] for name, c in label_conf.items()}}
    with atomic_path(out / "per_class_iou.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", *(f"{source}_iou" for source in per_class)])
        for i, name in enumerate(names):
            writer.writerow([name, *("" if np.isnan(v[i]) else f"{v[i]:.6f}" for v in per_class.values())])
    with atomic_path(out / "threshold_curve.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bg_pad", "miou"])
        writer.writerows([[pad, f"{value:.6f}"] for pad, value in zip(pads, curve, strict=True)])
    _plot_confusion(out / "confusion_cam.png", cam_conf, names, "CAM (GT-free pad): confusion (row-normalised)")
    for name, conf in label_conf.items():
        _plot_confusion(out / f"confusion_{name}.png", conf, names, f"{name}: confusion (row-normalised)")
    _plot_overlay(out / "overlay.png", manifest, ids[: params.overlay_images], store, sets)
    coverage_notes = ", ".join(f"{name} coverage {metrics[name]['confident']['coverage']:.3f}" for name in label_sets)
    report("Pseudo-label quality", rows, notes=f"{len(ids)} images; {coverage_notes}")
    return metrics


# Full supervision's val mIoU on the embedded benchmark, by (network, encoder, weights): `dvc repro` of the
# default params (artifacts/eval/metrics.json, final.fullsup.miou). The same network far below it on another
# dataset learned little there: its crops, scales or schedule do not fit that data.
EMBEDDED_FULLSUP_MIOU = {("deeplabv3plus", "resnet18", "none"): 0.904}
FAR_BELOW = 0.5  # flagged below this fraction of the embedded figure


def fullsup_check(fullsup_miou: float, network: tuple[str, str, str], train: dict | None) -> dict[str, Any]:
    """Whether full supervision (``fullsup_miou`` on val) is far below what ``network`` reaches on the embedded
    benchmark (:data:`EMBEDDED_FULLSUP_MIOU`; no check for a network not measured there), with its train-set
    figure (``train``: the training stage's) to tell underfitting from overfitting."""
    reference = EMBEDDED_FULLSUP_MIOU.get(network)
    check: dict[str, Any] = {"network": " / ".join(network), "embedded_fullsup_miou": reference}
    if reference is None:
        return {**check, "flagged": False, "note": "no embedded-benchmark figure for this network"}
    flagged = bool(fullsup_miou < FAR_BELOW * reference)
    check["flagged"] = flagged
    if flagged:
        fit = "" if train is None else (f"; on its own training images it reaches {train['miou']:.3f} "
                                        f"({'underfit' if train['miou'] < FAR_BELOW * reference else 'overfit'})")
        check["note"] = (f"full supervision reaches {fullsup_miou:.3f} val mIoU, the same network "
                         f"{reference:.3f} on the embedded benchmark{fit}: check segmenter.crop_size, rescale, "
                         f"min_steps and epochs against the images' sizes")  # fmt: skip
    return check


def ratio(value: float, reference: float) -> float | None:
    """``value / reference``, or None when the reference is zero or not a number (no bound to compare with)."""
    if not (np.isfinite(value) and np.isfinite(reference)) or reference <= 0:
        return None
    return value / reference


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


def _plot_overlay(
    path: Path, manifest: Manifest, ids: list[str], store: CamStore, label_sets: dict[str, LabelSet]
) -> None:  # fmt: skip
    """Grid: image | ground truth | CAM (max over classes, on the image) | each label set, labels blended over
    the image, with a legend of the classes shown."""
    by_id = manifest.by_id()
    palette = voc_palette()
    rows, captions, shown = [], [], set()
    for image_id in ids:
        entry = by_id[image_id]
        image = load_image(manifest, entry)
        maps, classes = store.read(image_id)
        heat = plt.get_cmap("jet")(maps.max(axis=0, initial=0.0))[..., :3]
        labels = [manifest.read_mask(entry), *(s.read(image_id, image.shape[:2]) for s in label_sets.values())]
        shown.update(int(c) for label in labels for c in np.unique(label))
        blended = [blend_labels(image, label, palette) for label in labels]
        rows.append([image, blended[0], 0.5 * image / 255.0 + 0.5 * heat, *blended[1:]])
        captions.append(f"{image_id}: {', '.join(manifest.classes[c] for c in classes)}")
    _save_grid(path, rows, ["image", "ground truth", "CAM", *label_sets], captions, _legend(manifest, shown, palette))


def _legend(manifest: Manifest, labels: set[int], palette: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, colour) of each foreground class among ``labels`` (0: background, 255: ignored, shown as is)."""
    names = ("background", *manifest.classes)
    return [(names[c], palette[c] / 255.0) for c in sorted(labels) if 0 < c < len(names)]


def _save_grid(
    path: Path, rows: list[list[np.ndarray]], titles: list[str], captions: list[str],
    legend: list[tuple[str, np.ndarray]] = (),
) -> None:  # fmt: skip
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(rows), len(titles), figsize=(2 * len(titles), 2 * len(rows) + 0.4), squeeze=False)
    for r, (panels, caption) in enumerate(zip(rows, captions, strict=True)):
        for c, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            axes[r, c].imshow(panel)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
        axes[r, 0].text(0, -2, caption, fontsize=6)
    fig.tight_layout(rect=(0, 0.06 if legend else 0, 1, 1))
    if legend:
        handles = [Patch(facecolor=colour, label=name) for name, colour in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def evaluate_predictions(
    manifest: Manifest, predictions: dict[str, Path], split: str, out: Path, overlay_images: int,
    bound: str = "fullsup",
) -> dict[str, Any]:  # fmt: skip
    """Final mIoU of each prediction set (name → :class:`~pipeline.io.LabelSet` path) on ``split`` and its
    ratio to ``bound``.

    Writes ``per_class_iou_<split>.csv``, ``confusion_<name>.png`` and ``overlay_<split>.png`` (image | ground
    truth | each prediction) into ``out``, which must exist.
    """
    n = manifest.num_classes + 1
    entries = manifest.entries(split)
    sets = {name: LabelSet(path) for name, path in predictions.items()}
    confusion = {name: np.zeros((n, n), dtype=np.int64) for name in predictions}
    for entry in progress(entries, total=len(entries), desc=f"evaluate {split}"):
        truth = manifest.read_mask(entry)
        for name, labels in sets.items():
            confusion[name] += confusion_matrix(labels.read(entry.id, truth.shape), truth, n)
    metrics: dict[str, Any] = {"split": split, "images": len(entries)}
    for name, conf in confusion.items():
        metrics[name] = summary(conf)
    for name in predictions:
        if name != bound and bound in predictions:
            metrics[name]["ratio_to_" + bound] = ratio(metrics[name]["miou"], metrics[bound]["miou"])
    names = ["background", *manifest.classes]
    per_class = {name: scores(c)["iou"] for name, c in confusion.items()}
    with atomic_path(out / f"per_class_iou_{split}.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", *(f"{name}_iou" for name in per_class)])
        for i, name in enumerate(names):
            writer.writerow([name, *("" if np.isnan(v[i]) else f"{v[i]:.6f}" for v in per_class.values())])
    for name, conf in confusion.items():
        _plot_confusion(out / f"confusion_{name}.png", conf, names, f"{name} on {split}: confusion (row-normalised)")
    palette = voc_palette()
    rows, shown = [], set()
    for entry in entries[:overlay_images]:
        image = load_image(manifest, entry)
        labels = [manifest.read_mask(entry), *(s.read(entry.id, (entry.height, entry.width)) for s in sets.values())]
        shown.update(int(c) for label in labels for c in np.unique(label))
        rows.append([image, *(blend_labels(image, label, palette) for label in labels)])
    captions = [f"{e.id}: {', '.join(manifest.classes[c] for c in e.labels)}" for e in entries[:overlay_images]]
    _save_grid(out / f"overlay_{split}.png", rows, ["image", "ground truth", *predictions], captions,
               _legend(manifest, shown, palette))  # fmt: skip
    report(f"Final segmentation on {split}", [{"model": name, **metrics[name]} for name in predictions])
    return metrics

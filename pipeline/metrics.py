"""Segmentation metrics from a confusion matrix: IoU, precision, recall, and FPR / FNR (eq. 4 of USAGE).

Eq. 4 of the USAGE paper: FPR = FP / (T + FP) and FNR = FN / (P + FN), where T and P are the true (positive)
predictions of the target class, i.e. TP. So FPR is the share of a class's predicted pixels that are wrong
(over-activation) and FNR the share of its true pixels that are missed (under-activation).
"""

from __future__ import annotations

import numpy as np

from pipeline.voc import IGNORE_INDEX


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts, rows = truth, columns = prediction; 255 in either is skipped."""
    valid = (truth != IGNORE_INDEX) & (prediction != IGNORE_INDEX)
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    if t.size and (t.max() >= num_labels or p.max() >= num_labels):
        raise ValueError(f"label value ≥ {num_labels} in confusion input")
    return np.bincount(t * num_labels + p, minlength=num_labels**2).reshape(num_labels, num_labels)


def scores(confusion: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-label IoU, precision, recall, FPR, FNR and their means over labels that occur."""
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        fpr = fp / (tp + fp)
        fnr = fn / (tp + fn)
    present = (tp + fp + fn) > 0
    iou[~present] = np.nan

    def mean(values: np.ndarray) -> float:
        kept = values[present & ~np.isnan(values)]
        return float(kept.mean()) if kept.size else float("nan")

    return {
        "iou": iou, "precision": precision, "recall": recall, "fpr": fpr, "fnr": fnr,
        "miou": mean(iou), "mean_precision": mean(precision), "mean_recall": mean(recall),
        "mean_fpr": mean(fpr), "mean_fnr": mean(fnr),
    }  # fmt: skip


def summary(confusion: np.ndarray) -> dict[str, float]:
    """The scalar figures of ``scores`` for a metrics file."""
    result = scores(confusion)
    return {
        "miou": result["miou"], "precision": result["mean_precision"], "recall": result["mean_recall"],
        "fpr": result["mean_fpr"], "fnr": result["mean_fnr"],
    }  # fmt: skip

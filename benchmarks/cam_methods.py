"""CAM methods side by side on the embedded benchmark: plain CAM and USAGE on the ResNet and on the ViT, APC and
PCC on the ViT.

Trains each (method, backbone) with the defaults of params.yaml on the prepared dataset (``make repro`` first),
extracts its CAMs on the train split and scores them as the evaluate stage does: GT-free mIoU at the fixed
background pad with FPR / FNR (eq. 4 of USAGE), beside the GT-tuned mIoU (pad chosen against ground truth,
labelled as such) and, for APC and PCC, the argmax over their own background map. Each row's mIoU and training
time are printed as ratios against plain CAM on the same backbone, trained in the same run (always run).
Outputs go to a scratch directory (``--out``), never into artifacts/.

    python -m benchmarks.cam_methods [--out /tmp/cam_methods] [--epochs N] [--variants cam:vit apc:vit]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline import layout
from pipeline.cams.extract import extract_cams
from pipeline.cams.train import MODEL_NAME, train_cam_method
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device
from pipeline.evaluation import evaluate_pseudo_labels
from pipeline.params import load_params

VARIANTS = [("cam", "resnet"), ("usage", "resnet"), ("cam", "vit"), ("usage", "vit"), ("apc", "vit"), ("pcc", "vit")]


def run_variant(method: str, backbone: str, out: Path, epochs: int | None) -> dict:
    params = load_params()
    section = getattr(params.cam, method)
    if "backbone" in type(section).model_fields:  # APC and PCC have no choice: a ViT
        section = section.model_copy(update={"backbone": backbone})
    if epochs is not None:
        section = section.model_copy(update={"training": section.training.model_copy(update={"epochs": epochs})})
    cam = params.cam.model_copy(update={"method": method, method: section})
    manifest, device = load_manifest(layout.DATASET), resolve_device(params.device)
    start = time.perf_counter()
    trained = train_cam_method(manifest, layout.DATASET, cam, params.seed, device, out / "classifier")
    seconds = time.perf_counter() - start
    store = out / "cams.zarr.zip"
    extract_cams(manifest, layout.DATASET, cam, out / "classifier" / MODEL_NAME, params.device, store, params.execution)
    scored = evaluate_pseudo_labels(manifest, store, {}, params.evaluate, {"cam": method}, out / "eval")["cam"]
    return {"method": method, "backbone": trained["backbone"], "train s": seconds, "val mAP": trained["val"]["mAP"],
            "free": scored["gt_free"], "tuned": scored["gt_tuned"], "own": scored.get("own_background")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cam_methods"))
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    variants = [f"{m}:{b}" for m, b in VARIANTS]
    parser.add_argument("--variants", nargs="*", default=variants, help="method:backbone pairs (default: all)")
    args = parser.parse_args()
    chosen = [tuple(v.split(":")) for v in args.variants]
    chosen = [("cam", b) for b in dict.fromkeys(b for _, b in chosen) if ("cam", b) not in chosen] + chosen
    rows = {(m, b): run_variant(m, b, args.out / f"{m}-{b}", args.epochs) for m, b in chosen}
    print(
        "| method | backbone | GT-free mIoU | FPR | FNR | GT-tuned mIoU (pad) | own-bg mIoU | val mAP | train s | "
        "× CAM train s | GT-free vs CAM |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (method, backbone), row in rows.items():
        base = rows[("cam", backbone)]
        free, tuned = row["free"], row["tuned"]
        own = f"{row['own']['miou']:.3f}" if row["own"] else "–"
        print(f"| {method} | {row['backbone']} | {free['miou']:.3f} | {free['fpr']:.3f} | {free['fnr']:.3f} | "
              f"{tuned['miou']:.3f} ({tuned['bg_pad']:.2f}) | {own} | {row['val mAP']:.3f} | {row['train s']:.0f} | "
              f"{row['train s'] / base['train s']:.2f} | {free['miou'] / base['free']['miou']:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()

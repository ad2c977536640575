"""The real-sample path end to end: a tiny VOC layout of photographs at VOC's sizes, through the whole DAG."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from skimage.segmentation import find_boundaries

from pipeline.io import write_label_png
from tests.conftest import dvc
from tests.conftest import edit_params as edit

# (photograph, size W×H, class index 1..20 of its object); the last two form the val split.
SAMPLES = [
    ("astronaut", (500, 375), 15), ("coffee", (500, 338), 5), ("chelsea", (500, 375), 8),
    ("rocket", (500, 338), 1), ("cat", (500, 375), 8), ("coffee", (500, 375), 5),
]  # fmt: skip


def make_voc_photographs(root: Path) -> list[str]:
    """VOC layout: JPEGImages, SegmentationClassAug with one elliptic object and a 255 border, the lists."""
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = []
    for index, (name, (width, height), cls) in enumerate(SAMPLES):
        image_id = f"2011_{index:06d}"
        Image.fromarray(getattr(data, name)()).resize((width, height), Image.BILINEAR).save(
            root / "JPEGImages" / f"{image_id}.jpg", quality=90
        )
        yy, xx = np.mgrid[:height, :width]
        mask = np.where(((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2 < 1, cls, 0)
        mask = np.where(find_boundaries(mask, mode="inner"), 255, mask).astype(np.uint8)
        write_label_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
        ids.append(image_id)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[4:]) + "\n")
    return ids


def test_voc_sized_photographs_run_prepare_data_to_evaluate(project: Path) -> None:
    voc = project / "VOC2012"
    ids = make_voc_photographs(voc)
    edit(project, lambda p: p["data"].update(source="voc", voc={**p["data"]["voc"], "root": str(voc)}))
    dvc(project, "repro")
    manifest = json.loads((project / "artifacts/dataset/manifest.json").read_text())
    sizes = {(e["width"], e["height"]) for entries in manifest["splits"].values() for e in entries}
    assert sizes == {(500, 375), (500, 338)}
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert metrics["images"] == 4 and metrics["final"]["images"] == 2
    assert 0.0 <= metrics["final"]["prediction"]["miou"] <= 1.0
    with zipfile.ZipFile(project / "artifacts/predictions.zip") as predictions:
        for image_id in ids[4:]:
            prediction = Image.open(io.BytesIO(predictions.read(f"{image_id}.png")))
            assert prediction.size == Image.open(voc / "JPEGImages" / f"{image_id}.jpg").size

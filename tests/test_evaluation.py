import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.manifest import Entry, Manifest
from pipeline.evaluation import evaluate_pseudo_labels, sweep_values
from pipeline.io import pack_zip, write_label_png
from pipeline.params import EvaluateParams
from tests.test_cam_store import write_store


def test_cam_and_seed_scores_gt_free_beside_gt_tuned(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    truth = np.array([[0, 0, 1, 1]], dtype=np.uint8)
    Image.new("RGB", (4, 1)).save(root / "img" / "a.jpg")
    write_label_png(root / "a.png", truth)
    manifest = Manifest("t", root, ("c0", "c1"), {"train": [Entry("a", "img/a.jpg", "a.png", 1, 4, (0,))]})
    cams = write_store(tmp_path, {"a": (np.array([[[0.1, 0.3, 0.6, 1.0]]], dtype=np.float32), [0])}, {})
    seeds = tmp_path / "seeds"
    write_label_png(seeds / "a.png", np.array([[0, 255, 1, 1]], dtype=np.uint8))
    params = EvaluateParams(cam_bg_pad=0.2, sweep={"start": 0.2, "stop": 0.6, "step": 0.2}, overlay_images=1)
    assert sweep_values(params) == [0.2, 0.4, 0.6]

    metrics = evaluate_pseudo_labels(
        manifest, cams, {"seeds": seeds}, params, {"cam": "cam", "seeds": "threshold"}, tmp_path / "eval"
    )
    # GT-free pad 0.2: prediction [0, 1, 1, 1] → bg IoU 1/2, class IoU 2/3.
    assert metrics["cam"]["gt_free"]["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # The sweep finds pad 0.4 (prediction [0, 0, 1, 1], perfect) and says it looked at ground truth.
    assert metrics["cam"]["gt_tuned"]["bg_pad"] == 0.4
    assert metrics["cam"]["gt_tuned"]["miou"] == pytest.approx(1.0)
    assert "ground truth" in metrics["cam"]["gt_tuned"]["note"]
    # Seeds: 255 counted as background → perfect; the confident pixels cover 3 of 4.
    assert metrics["seeds"]["miou"] == pytest.approx(1.0)
    assert metrics["seeds"]["confident"]["coverage"] == pytest.approx(0.75)
    assert metrics["seeds"]["method"] == "threshold"
    lines = (tmp_path / "eval" / "per_class_iou.csv").read_text().splitlines()
    assert lines[0] == "class,cam_iou,seeds_iou"
    assert lines[2].startswith("c0,0.666667,1.000000")
    for name in ("overlay.png", "confusion_cam.png", "confusion_seeds.png", "threshold_curve.csv"):
        assert (tmp_path / "eval" / name).is_file()


def test_a_method_with_a_background_map_is_also_scored_by_its_own_argmax(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (4, 1)).save(root / "img" / "a.jpg")
    write_label_png(root / "a.png", np.array([[0, 0, 1, 1]], dtype=np.uint8))
    manifest = Manifest("t", root, ("c0", "c1"), {"train": [Entry("a", "img/a.jpg", "a.png", 1, 4, (0,))]})
    maps = np.array([[[0.5, 0.5, 0.5, 0.5]], [[0.1, 0.3, 0.6, 1.0]]], dtype=np.float32)  # background, class 0
    cams = write_store(tmp_path, {"a": (maps, [0])}, {"background": True})
    params = EvaluateParams(cam_bg_pad=0.2, sweep={"start": 0.2, "stop": 0.6, "step": 0.2}, overlay_images=1)
    metrics = evaluate_pseudo_labels(manifest, cams, {}, params, {}, tmp_path / "eval")
    assert metrics["cam"]["own_background"]["miou"] == pytest.approx(1.0)  # 0.6 and 1.0 beat the map's 0.5
    assert metrics["cam"]["gt_free"]["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # the pad still reads classes


def test_missing_seed_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    write_label_png(root / "a.png", np.zeros((1, 2), dtype=np.uint8))
    manifest = Manifest("t", root, ("c0",), {"train": [Entry("a", "a.jpg", "a.png", 1, 2, (0,))]})
    cams = write_store(tmp_path, {"a": (np.zeros((1, 1, 2), dtype=np.float32), [0])}, {})
    with pytest.raises(FileNotFoundError, match=r"seeds: not found"):
        evaluate_pseudo_labels(manifest, cams, {"seeds": tmp_path / "seeds"}, EvaluateParams(), {}, tmp_path / "e")


def test_evaluate_that_fails_midway_leaves_no_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage publishes artifacts/eval only when everything is scored (here: the val scoring fails)."""
    from pipeline import layout
    from pipeline.data.datasets import prepare_dataset
    from pipeline.params import DataParams, PipelineParams
    from stages import evaluate

    monkeypatch.chdir(tmp_path)
    manifest = prepare_dataset(DataParams(synthetic={"num_train": 2, "num_val": 1, "image_size": 32}), layout.DATASET)
    entries = manifest.entries("train")
    maps = {e.id: (np.full((len(e.labels), 32, 32), 0.5, np.float32), list(e.labels)) for e in entries}
    monkeypatch.setattr(layout, "CAMS", write_store(tmp_path, maps, {}))
    for label_set in (layout.SEEDS, layout.REFINED):
        for entry in entries:
            write_label_png(tmp_path / "labels" / f"{entry.id}.png", np.zeros((32, 32), np.uint8))
        pack_zip(tmp_path / "labels", label_set)
    with pytest.raises(FileNotFoundError, match="predictions.zip: not found"):  # no predictions on val
        evaluate.body(PipelineParams())
    assert not (layout.EVALUATION / "metrics.json").exists()


def test_ratio_is_guarded_and_nan_is_written_as_null(tmp_path: Path) -> None:
    from pipeline.evaluation import ratio
    from pipeline.io import write_json

    assert ratio(0.5, 0.0) is None and ratio(0.5, float("nan")) is None and ratio(0.5, 0.8) == pytest.approx(0.625)
    write_json(tmp_path / "m.json", {"miou": float("nan"), "rows": [1.0, float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"miou": None, "rows": [1.0, None]}

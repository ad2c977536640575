"""Sizes that follow the data (pipeline/data/sizes.py): the crop fit derived from the images' sizes, its
warning, the step floor, and the training and inference paths that use them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline.data.sizes import AS_STORED, ViewFit, resolve_rescale, scaled_views, scheduled_epochs, split_sizes
from pipeline.evaluation import fullsup_check

# (sides of the train images, crop) → what rescale: auto resolves to
DISTRIBUTIONS = {
    "embedded 64 px, crop 64": ([(64, 64)] * 5, 64, "none"),
    "VOC ~500×375, crop 512": ([(375, 500), (333, 500), (500, 375), (281, 500), (366, 500)], 512, "none"),
    "VOC ~500×375, crop 321 (DeepLab v1)": ([(375, 500), (333, 500), (500, 375)], 321, "none"),
    "150-260 px, crop 64": ([(150, 260), (200, 170), (230, 240), (180, 155), (260, 199)], 64, "short_side"),
    "COCO ~640×480, crop 128": ([(480, 640), (427, 640), (640, 480)], 128, "short_side"),
    "tiny 32 px, crop 64": ([(32, 40), (30, 32)], 64, "none"),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_auto_fits_the_crop_to_the_short_side_only_where_the_images_are_far_larger(name: str) -> None:
    sides, crop, expected = DISTRIBUTIONS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        fit = resolve_rescale("auto", crop, split_sizes(sides), "segmenter")
    assert fit == ViewFit(expected, crop)


def test_split_sizes_are_medians_of_each_side_and_of_the_short_side() -> None:
    sizes = split_sizes([(150, 260), (200, 170), (230, 240), (180, 155), (260, 199)])
    assert (sizes.images, sizes.median_height, sizes.median_width, sizes.median_short_side) == (5, 200, 199, 170)
    assert sizes.describe() == "median 199×200 px, short side 170 px"
    with pytest.raises(ValueError, match="no images"):
        split_sizes([])


def test_the_short_side_fit_scales_each_image_by_crop_over_its_short_side() -> None:
    fit = ViewFit("short_side", 64)
    assert fit.scale(200, 160) == 64 / 160 and fit.scale(128, 256) == 0.5 and fit.scale(64, 64) == 1.0
    assert AS_STORED.scale(200, 160) == 1.0
    assert scaled_views((1.0, 0.5, 1.5, 2.0), 0.5) == (0.5, 0.25, 0.75, 1.0)
    scales = (1.0, 0.75, 1.25)
    assert scaled_views(scales, 1.0) is scales  # as stored: the very views of before


def test_an_explicit_none_with_a_far_smaller_crop_warns_naming_the_setting_and_the_median_size() -> None:
    sizes = split_sizes([(150, 260), (200, 170), (230, 240)])
    with pytest.warns(UserWarning) as caught:
        fit = resolve_rescale("none", 64, sizes, "cam.cam.training")
    assert fit == ViewFit("none", 64)
    message = str(caught[0].message)
    assert "cam.cam.training.crop_size 64" in message and "median 240×200 px, short side 170 px" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit values win, without a warning where the crop fits
        assert resolve_rescale("none", 128, sizes, "segmenter") == ViewFit("none", 128)
        assert resolve_rescale("short_side", 512, split_sizes([(64, 64)]), "segmenter").mode == "short_side"


@pytest.mark.parametrize(("epochs", "min_steps", "batches", "expected"), [
    (12, 900, 75, 12),  # the embedded benchmark: 1,200 images at batch 16, unchanged
    (12, 900, 37, 25),  # 597 images at batch 16: 925 steps, not 444
    (6, 450, 37, 13),
    (6, 0, 1, 6),  # no floor
    (5, 900, 661, 5),  # VOC's 10,582 images: the papers' epochs already pass it
    (1, 10, 0, 10),  # a loader of no whole batch counts as one
])  # fmt: skip
def test_the_step_floor_raises_the_epochs_to_reach_min_steps(epochs, min_steps, batches, expected) -> None:
    assert scheduled_epochs(epochs, min_steps, batches) == expected


def test_validating_the_size_settings_imports_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from pipeline.params import SegmenterParams; SegmenterParams(rescale='none'); "
            "assert 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_crops_see_the_whole_short_side_once_fitted() -> None:
    """A 96 × 192 image with a 32 px crop: as stored the crop is a sixth of its width and a third of its height;
    fitted, the image is 32 × 64 and the crop half of it, the whole height."""
    from pipeline.data.loading import augment

    image = torch.arange(96 * 192, dtype=torch.float32).reshape(1, 96, 192).expand(3, -1, -1)
    generator = torch.Generator().manual_seed(0)
    fitted, _ = augment(image, 32, (1.0, 1.0), generator, None, ViewFit("short_side", 32).scale(96, 192))
    assert fitted.shape == (3, 32, 32)
    # the fitted crop's rows span the whole image height: its first and last rows come from the top and bottom
    assert fitted[0, 0].max() < 192 * 4 and fitted[0, -1].min() > 192 * 90
    stored, _ = augment(image, 32, (1.0, 1.0), torch.Generator().manual_seed(0), None, AS_STORED.scale(96, 192))
    assert float(stored[0, -1, 0] - stored[0, 0, 0]) == 31 * 192  # 32 adjacent rows of the stored image


def test_a_unit_base_scale_leaves_the_augmentation_bit_identical() -> None:
    from pipeline.data.loading import augment

    image, label = torch.rand(3, 50, 70), torch.randint(0, 3, (50, 70))
    for scale_range in ((1.0, 1.0), (0.75, 1.25)):
        a = augment(image, 48, scale_range, torch.Generator().manual_seed(3), label)
        b = augment(image, 48, scale_range, torch.Generator().manual_seed(3), label, 1.0)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_full_supervision_far_below_its_embedded_figure_is_flagged_with_the_train_figure() -> None:
    network = ("deeplabv3plus", "resnet18", "none")
    low = fullsup_check(0.113, network, {"images": 64, "miou": 0.2})
    assert low["flagged"] and low["embedded_fullsup_miou"] == 0.904
    assert "0.113 val mIoU" in low["note"] and "0.200 (underfit)" in low["note"]
    overfit = fullsup_check(0.3, network, {"images": 64, "miou": 0.95})
    assert overfit["flagged"] and "(overfit)" in overfit["note"]
    assert not fullsup_check(0.6, network, None)["flagged"]  # 0.6 > 0.5 × 0.904
    unknown = fullsup_check(0.1, ("deeplabv3", "resnet101", "imagenet"), None)
    assert not unknown["flagged"] and unknown["embedded_fullsup_miou"] is None


def test_train_set_figures_use_a_fixed_subset_spread_over_the_split() -> None:
    from pipeline.trainer import spread

    assert spread(10, 4) == [0, 2, 5, 7] and spread(3, 64) == [0, 1, 2] and spread(5, None) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(spread(1000, 64)) > 0)


@pytest.fixture(scope="module")
def large_images(tmp_path_factory: pytest.TempPathFactory):
    """Synthetic 96 px images (12 train, 4 val): far larger than a 32 px crop."""
    from pipeline.data.datasets import prepare_dataset
    from pipeline.params import DataParams

    out = tmp_path_factory.mktemp("large") / "dataset"
    return out, prepare_dataset(DataParams(synthetic={"num_train": 12, "num_val": 4, "image_size": 96}), out)


def test_segmenter_training_fits_the_images_raises_the_epochs_and_reports_its_train_figure(large_images, tmp_path):
    from pipeline.params import SegmenterParams
    from pipeline.segmentation.training import train_segmenter

    manifest_dir, manifest = large_images
    params = SegmenterParams(epochs=1, batch_size=4, crop_size=32, min_steps=7)  # 3 batches an epoch: 3 epochs
    metrics, history = train_segmenter(manifest, manifest_dir, None, params, 0, torch.device("cpu"), tmp_path / "s",
                                       "train_segmenter")  # fmt: skip
    assert (metrics["epochs"], metrics["steps"], len(history)) == (3, 9, 3)
    assert metrics["rescale"] == "short_side" and metrics["train_median_size"].startswith("median 96×96 px")
    assert metrics["train"]["images"] == 12 and 0.0 <= metrics["train"]["miou"] <= 1.0


def test_cam_training_and_extraction_see_images_at_the_fitted_scale(large_images, tmp_path, monkeypatch):
    """The classifier's label figures (train and val) and its CAM views are at the fitted scale: with a 32 px
    crop on 96 px images, scales (1, 0.5) are views of 32 and 16 px, not 96 and 48."""
    from pipeline.cams.params import CamParams
    from pipeline.cams.train import MODEL_NAME, train_cam_method

    manifest_dir, manifest = large_images
    cam = CamParams(method="cam", inference={"scales": (1.0, 0.5), "flip": False},
                    cam={"training": {"epochs": 1, "batch_size": 4, "crop_size": 32, "min_steps": 0}})  # fmt: skip
    metrics = train_cam_method(manifest, manifest_dir, cam, 0, torch.device("cpu"), tmp_path / "classifier")
    assert metrics["rescale"] == "short_side" and metrics["steps"] == 3
    assert set(metrics["train"]) == set(metrics["val"]) == {"exact_match", "f1_macro", "mAP"}

    import pipeline.cams.extract as extract
    from pipeline.execution.params import ExecutionParams

    seen = []

    def recorded(model, images, classes, scales, *args):
        seen.append(scales)
        return original(model, images, classes, scales, *args)

    original = extract.multiscale_cam
    monkeypatch.setattr(extract, "multiscale_cam", recorded)
    extract.extract_cams(manifest, manifest_dir, cam, tmp_path / "classifier" / MODEL_NAME, "cpu",
                         tmp_path / "cams.zarr.zip", ExecutionParams())  # fmt: skip
    assert seen and all(scales == (1 / 3, 1 / 6) for scales in seen)
    from pipeline.cams.store import CamStore

    assert CamStore(tmp_path / "cams.zarr.zip").attributes["rescale"] == "short_side"

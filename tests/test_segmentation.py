"""Segmentation: ignore index, multi-scale averaging, the ratio to full supervision, networks and presets."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.data.loading import read_training_label
from pipeline.data.manifest import Entry, Manifest
from pipeline.evaluation import evaluate_predictions
from pipeline.io import FileTree, pack_zip, write_label_png
from pipeline.params import PredictParams, SegmenterParams
from pipeline.segmentation.predict import multiscale_probabilities, sams_postprocess
from pipeline.segmentation.training import build_segmenter, segmentation_loss
from tests.test_sam_seeds import index_of

REPO = Path(__file__).resolve().parents[1]


def test_loss_ignores_255() -> None:
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # (1, 2 classes, 1, 2 pixels)
    labels = torch.tensor([[[0, 255]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))  # pixel 0 only
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected)
    assert segmentation_loss(logits, torch.tensor([[[255, 255]]])).isnan()  # nothing labelled: no signal


class WidthLogits(torch.nn.Module):
    """Logits [0, ln(width)] everywhere: p(class 1) = w / (1 + w) depends only on the input's width."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        logits = torch.zeros(batch, 2, height, width)
        logits[:, 1] = math.log(width)
        return logits


def test_multiscale_average_of_softmax_over_scales_and_flips() -> None:
    image = torch.zeros(3, 2, 4)
    probabilities = multiscale_probabilities(WidthLogits(), image, (1.0, 0.5), flip=True)
    # Width 4 → p1 = 4/5; width 2 → p1 = 2/3; two flips each: (2·0.8 + 2·0.6667) / 4.
    assert probabilities.shape == (2, 2, 4)
    assert probabilities[1].flatten().tolist() == pytest.approx([(0.8 + 2 / 3) / 2] * 8)
    assert probabilities.sum(dim=0).flatten().tolist() == pytest.approx([1.0] * 8)
    single = multiscale_probabilities(WidthLogits(), image, (1.0,), flip=False)
    assert single[1, 0, 0].item() == pytest.approx(0.8)


def test_ratio_to_full_supervision(tmp_path: Path) -> None:
    root = tmp_path / "data"
    truth = np.array([[0, 1, 1, 0]], dtype=np.uint8)
    write_label_png(root / "a.png", truth)
    (root / "a.jpg").parent.mkdir(exist_ok=True)
    from PIL import Image

    Image.fromarray(np.zeros((1, 4, 3), np.uint8)).save(root / "a.jpg")
    manifest = Manifest("t", root, ("c0",), {"val": [Entry("a", "a.jpg", "a.png", 1, 4, (0,))]})
    write_label_png(tmp_path / "pred/a.png", np.array([[0, 1, 0, 0]], dtype=np.uint8))  # bg 2/3, c0 1/2
    write_label_png(tmp_path / "full/a.png", truth)  # perfect: mIoU 1
    out = tmp_path / "eval"
    out.mkdir()
    metrics = evaluate_predictions(
        manifest, {"prediction": tmp_path / "pred", "fullsup": tmp_path / "full"}, "val", out, 1
    )  # fmt: skip
    assert metrics["prediction"]["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["fullsup"]["miou"] == 1.0
    assert metrics["prediction"]["ratio_to_fullsup"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert (out / "overlay_val.png").is_file() and (out / "per_class_iou_val.csv").is_file()


def test_training_label_checks_name_the_file(tmp_path: Path) -> None:
    entry = Entry("a", "a.jpg", "a.png", 1, 3, (0,))
    write_label_png(tmp_path / "labels" / "a.png", np.array([[0, 7, 255]], dtype=np.uint8))
    pack_zip(tmp_path / "labels", tmp_path / "labels.zip")
    for labels in (FileTree(tmp_path / "labels"), FileTree(tmp_path / "labels.zip")):
        with pytest.raises(ValueError, match=rf"{labels.path}/a.png: label values \[7\] out of range 0..2"):
            read_training_label(labels, "a.png", entry, 2)
        with pytest.raises(ValueError, match="does not match the image 2×3"):
            read_training_label(labels, "a.png", Entry("a", "a.jpg", "a.png", 2, 3, (0,)), 21)
        with pytest.raises(FileNotFoundError, match=f"{labels.path}/b.png: label missing"):
            read_training_label(labels, "b.png", entry, 2)


def test_sams_postprocessing_can_score_the_models_own_background() -> None:
    """Four one-pixel whole masks; c1 = (0.9, 0.6, 0.3, 0.05), background = (0.1, 0.45, 0.2, 0.9)."""
    probabilities = np.array([[[0.1, 0.45, 0.2, 0.9]], [[0.0, 0.0, 0.0, 0.0]], [[0.9, 0.6, 0.3, 0.05]]])
    regions = index_of([[0], [1], [2], [3]], [2, 2, 2, 2], shape=(1, 4))
    # eq. 8: S = (1, 0.647, 0.294, 0); eq. 9 (α 0.6): bg = (0, 0.535, 0.812, 1) → the third pixel is background
    assert sams_postprocess(probabilities, PredictParams(), regions).tolist() == [[2, 2, 0, 0]]
    # the model's background scored like a class: (0, 0.4375, 0.125, 1) → the third pixel keeps c1
    model = PredictParams(sams={"background": "model"})
    assert sams_postprocess(probabilities, model, regions).tolist() == [[2, 2, 2, 0]]


@pytest.mark.parametrize(("network", "encoder"), [("deeplabv3plus", "resnet18"), ("deeplabv3", "resnet10")])
def test_networks_give_logits_at_the_input_size(network: str, encoder: str) -> None:
    model = build_segmenter(SegmenterParams(network=network, encoder=encoder), 21).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 64)).shape == (1, 21, 48, 64)


def test_unknown_encoder_is_named() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'resnet9' for deeplabv3"):
        build_segmenter(SegmenterParams(network="deeplabv3", encoder="resnet9"), 21)


def test_presets_are_valid_params() -> None:
    for name in ("segmenter_voc.yaml", "segmenter_coco.yaml"):
        preset = yaml.safe_load((REPO / "presets" / name).read_text())
        segmenter = SegmenterParams.model_validate(preset["segmenter"])
        PredictParams.model_validate(preset["predict"])
        assert (segmenter.encoder, segmenter.crop_size, segmenter.weights) == ("resnet101", 512, "imagenet")


def test_sams_postprocessing_uses_the_predicted_classes() -> None:
    # 1×4 image, classes bg / c0 / c1; the prediction says c1 on the left half; one whole mask per half.
    probabilities = np.array([[[0.2, 0.2, 0.9, 0.9]], [[0.1, 0.1, 0.05, 0.05]], [[0.7, 0.6, 0.05, 0.05]]])
    regions = index_of([[0, 1], [2, 3]], [2, 2], shape=(1, 4))
    label = sams_postprocess(probabilities, PredictParams(), regions)
    assert label.tolist() == [[2, 2, 0, 0]]


@pytest.mark.parametrize(("network", "encoder"), [("deeplabv3plus", "resnet18"), ("deeplabv3", "resnet10")])
@pytest.mark.parametrize("shape", [(375, 500), (500, 375)])
def test_prediction_on_voc_sized_images_at_any_scale(network: str, encoder: str, shape: tuple[int, int]) -> None:
    """smp refuses 500×375 at scale 1.0 and 72 px at 0.75 of 96; padding to the stride then cropping does not."""
    model = build_segmenter(SegmenterParams(network=network, encoder=encoder), 3).eval()
    probabilities = multiscale_probabilities(model, torch.rand(3, *shape), (1.0, 0.75), flip=True)
    assert probabilities.shape == (3, *shape)
    torch.testing.assert_close(probabilities.sum(dim=0), torch.ones(shape))
    small = multiscale_probabilities(model, torch.rand(3, 96, 96), (0.75,), flip=False)
    assert small.shape == (3, 96, 96)


def test_crop_sizes_the_network_cannot_take_are_refused() -> None:
    with pytest.raises(ValueError, match="crop_size 72 cannot be taken by deeplabv3plus: .*divisible by the output"):
        SegmenterParams(crop_size=72)
    assert SegmenterParams(crop_size=72, output_stride=8).crop_size == 72
    assert SegmenterParams(network="deeplabv3", encoder="resnet10", crop_size=72).crop_size == 72

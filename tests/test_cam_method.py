import math
from pathlib import Path

import pytest
import torch

from pipeline.backbones import imagenet_state_dict
from pipeline.cams import multiscale_cam
from pipeline.methods.cam import GapClassifier, multilabel_soft_margin_loss


def test_eq1_soft_margin_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    sig = [0.5, 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    expected = -(math.log(sig[0]) + math.log(1 - sig[1]) + math.log(sig[2])) / 3
    assert multilabel_soft_margin_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_eq2_cam_is_classifier_weights_on_features_and_gap_commutes() -> None:
    torch.manual_seed(0)
    model = GapClassifier("resnet10", num_classes=4, output_stride=16).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.trunk(images)
        cams = model.cam(images)
        expected = torch.einsum("kc,bchw->bkhw", model.classifier.weight[:, :, 0, 0], features)
        assert cams.shape == (2, 4, 4, 4)  # output stride 16
        torch.testing.assert_close(cams, expected, rtol=1e-5, atol=1e-5)
        # GAP then W equals W then GAP (the logits are the mean CAM).
        torch.testing.assert_close(model(images), cams.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("stride", "side"), [(8, 8), (16, 4), (32, 2)])
def test_output_stride(stride: int, side: int) -> None:
    model = GapClassifier("resnet10", num_classes=2, output_stride=stride).eval()
    with torch.no_grad():
        assert model.cam(torch.zeros(1, 3, 64, 64)).shape[-1] == side


def test_imagenet_weights_missing_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"ImageNet weights for 'resnet50' not found at .*nothing is downloaded"
    ):
        imagenet_state_dict("resnet50")
    with pytest.raises(FileNotFoundError, match="no ImageNet weights exist for 'resnet10'"):
        imagenet_state_dict("resnet10")


def test_multiscale_cam_relu_sum_flip_and_max_normalisation() -> None:
    # A CAM function that returns the image's first channel for class 0 and its negation for class 1,
    # so flips and scales can be checked by hand.
    def cam_fn(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([batch[:, 0], -batch[:, 0], 2 * batch[:, 0]], dim=1)

    image = torch.zeros(3, 4, 4)
    image[0, :, 0] = 1.0  # left column lit
    out = multiscale_cam(cam_fn, image, classes=[0, 1], scales=(1.0,), flip=True)
    # flip branch: the flipped image lights the right column, flipped back → the left column again: 2× left.
    assert out.shape == (2, 4, 4)
    assert out[0, :, 0].tolist() == pytest.approx([1.0] * 4, abs=1e-4)
    assert out[0, :, 1:].abs().max().item() == 0.0
    assert out[1].abs().max().item() == 0.0  # ReLU removes the negative class
    # Without flip the left column is still the max → normalised to ~1.
    single = multiscale_cam(cam_fn, image, classes=[2], scales=(1.0, 2.0), flip=False)
    assert single.max().item() == pytest.approx(1.0, abs=1e-4)


def test_padded_forward_crops_back_what_the_network_saw() -> None:
    """A coarse (stride 4) network on a 6×10 input padded to 8×12: the output is resized to 8×12 and cropped."""
    from pipeline.tta import padded_forward

    seen = []

    def coarse(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape[-2:]))
        return torch.nn.functional.avg_pool2d(batch, 4)

    batch = torch.arange(60, dtype=torch.float32).view(1, 1, 6, 10)
    out = padded_forward(coarse, batch, 4)
    assert seen == [(8, 12)] and out.shape == (1, 1, 6, 10)
    expected = torch.nn.functional.interpolate(
        torch.nn.functional.avg_pool2d(torch.nn.functional.pad(batch, (0, 2, 0, 2)), 4), size=(8, 12),
        mode="bilinear", align_corners=False,
    )[..., :6, :10]  # fmt: skip
    torch.testing.assert_close(out, expected)
    assert padded_forward(coarse, torch.zeros(1, 1, 8, 8), 4).shape == (1, 1, 2, 2)  # no padding: as given


@pytest.mark.parametrize("shape", [(375, 500), (500, 375)])
def test_cams_of_voc_sized_images(shape: tuple[int, int]) -> None:
    model = GapClassifier("resnet10", num_classes=3, output_stride=16).eval()
    cams = multiscale_cam(model.cam, torch.rand(3, *shape), [0, 2], (1.0, 0.5), True, model.size_multiple)
    assert cams.shape == (2, *shape)
    assert float(cams.min()) >= 0 and float(cams.amax(dim=(1, 2)).max()) <= 1.0

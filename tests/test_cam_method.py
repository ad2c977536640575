"""Plain CAM (eq. 1–2 of POLE), its backbones, and the test-time augmentation shared with segmentation."""

import math
from pathlib import Path

import pytest
import torch

from pipeline.backbones import imagenet_state_dict
from pipeline.cams.extract import multiscale_cam
from pipeline.cams.methods.plain_cam.model import multilabel_soft_margin_loss
from tests.test_cam_contract import tiny_method


def test_eq1_soft_margin_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    sig = [0.5, 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    expected = -(math.log(sig[0]) + math.log(1 - sig[1]) + math.log(sig[2])) / 3
    assert multilabel_soft_margin_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("backbone", "side"), [("resnet", 4), ("vit", 8)])
def test_eq2_cam_is_classifier_weights_on_features_and_gap_commutes(backbone: str, side: int) -> None:
    model = tiny_method("cam", backbone, classes=4)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.network.backbone(images)
        cams = model.infer_cams(images, [0, 1, 2, 3])
        expected = torch.einsum("kc,bchw->bkhw", model.network.classifier.weight[:, :, 0, 0], features)
        assert cams.shape == (2, 4, side, side)  # ResNet at output stride 16; ViT patches of 8
        torch.testing.assert_close(cams, expected, rtol=1e-5, atol=1e-5)
        # GAP then W equals W then GAP (the logits are the mean CAM).
        torch.testing.assert_close(model.image_scores(images), cams.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)
        assert model.infer_cams(images, [2]).shape == (2, 1, side, side)


@pytest.mark.parametrize(("stride", "side"), [(8, 8), (16, 4), (32, 2)])
def test_output_stride(stride: int, side: int) -> None:
    model = tiny_method("cam", "resnet", resnet={"output_stride": stride})
    with torch.no_grad():
        assert model.infer_cams(torch.zeros(1, 3, 64, 64), [0]).shape[-1] == side


def test_imagenet_weights_missing_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"ImageNet weights \(imagenet\) for 'resnet50' not found in .*nothing is downloaded"
    ):
        imagenet_state_dict("resnet50")
    with pytest.raises(FileNotFoundError, match="torchvision has no imagenet weights for 'resnet10'"):
        imagenet_state_dict("resnet10")


def test_vit_weights_missing_name_the_file_or_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.backbones import ViTFeatures
    from pipeline.cams.network_params import ViTBackboneParams

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    bare = {"patch_size": None, "embed_dim": None, "depth": None, "num_heads": None, "weights": "imagenet"}
    missing = tmp_path / "deit_small.pth"
    with pytest.raises(FileNotFoundError, match=rf"{missing}: ViT checkpoint not found"):
        ViTFeatures(ViTBackboneParams(**bare, checkpoint=str(missing)), 224, pretrained=True)
    uncached = r"'deit_small_patch16_224' \(timm/deit_small_patch16_224.fb_in1k\) are not in the local Hugging Face"
    with pytest.raises(FileNotFoundError, match=uncached):
        ViTFeatures(ViTBackboneParams(**bare), 224, pretrained=True)


class _Mirror(torch.nn.Module):
    """A CAM "method" returning the image's first channel for class 0, its negation for 1, twice it for 2."""

    size_multiple = 1

    def infer_cams(self, batch: torch.Tensor, classes: list[int]) -> torch.Tensor:
        return torch.stack([batch[:, 0], -batch[:, 0], 2 * batch[:, 0]], dim=1)[:, classes]


def test_multiscale_cam_relu_sum_flip_and_max_normalisation() -> None:
    image = torch.zeros(3, 4, 4)
    image[0, :, 0] = 1.0  # left column lit
    out = multiscale_cam(_Mirror(), image, classes=[0, 1], scales=(1.0,), flip=True)
    # flip branch: the flipped image lights the right column, flipped back → the left column again: 2× left.
    assert out.shape == (2, 4, 4)
    assert out[0, :, 0].tolist() == pytest.approx([1.0] * 4, abs=1e-4)
    assert out[0, :, 1:].abs().max().item() == 0.0
    assert out[1].abs().max().item() == 0.0  # ReLU removes the negative class
    # Without flip the left column is still the max → normalised to ~1.
    single = multiscale_cam(_Mirror(), image, classes=[2], scales=(1.0, 2.0), flip=False)
    assert single.max().item() == pytest.approx(1.0, abs=1e-4)


def test_multiscale_sum_counts_views_and_flips_back() -> None:
    from pipeline.tta import multiscale_sum

    image = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    total, views = multiscale_sum(lambda batch: batch, image, (1.0,), flip=True)
    assert views == 2
    torch.testing.assert_close(total, 2 * image)  # each flipped view is flipped back before summing
    total, views = multiscale_sum(lambda batch: batch, image, (1.0, 2.0, 0.5), flip=False)
    assert views == 3 and total.shape == (1, 3, 4)


def test_stretched_views_are_clip_es_resized_inputs_normalised_before_upsampling() -> None:
    """CLIP-ES: a 20 × 30 image is stretched to 32 × 32 (sides rounded up to 16), the network's 2 × 2 map divided
    by its max there, then resized bilinearly to 20 × 30; padding instead shows the network a 32 × 32 input
    holding the image in its top-left 20 × 30 and re-normalises after upsampling."""
    import torch.nn.functional as F

    from pipeline.tta import stretched_sum

    seen = []

    def network(batch: torch.Tensor) -> torch.Tensor:  # a 16-pixel patch grid: the mean of each patch's first channel
        seen.append(tuple(batch.shape[-2:]))
        return F.avg_pool2d(batch[:, :1], 16) + 1.0

    image = torch.rand(3, 20, 30)
    total, views = stretched_sum(network, image, (1.0,), flip=False, multiple=16)
    assert seen == [(32, 32)] and views == 1
    stretched = F.interpolate(image[None], size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    grid = network(stretched)
    expected = F.interpolate(grid / grid.amax(), size=(20, 30), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(total, expected)


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


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
@pytest.mark.parametrize("shape", [(375, 500), (500, 375)])
def test_cams_of_voc_sized_images(backbone: str, shape: tuple[int, int]) -> None:
    model = tiny_method("cam", backbone, classes=3)
    cams = multiscale_cam(model, torch.rand(3, *shape), [0, 2], (1.0, 0.5), True)
    assert cams.shape == (2, *shape)
    assert float(cams.min()) >= 0 and float(cams.amax(dim=(1, 2)).max()) <= 1.0


def test_fmas_coarse_cams_follow_the_inference_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coarse CAMs of FMA's first phase are extracted as the main CAMs are (the request names a stretch)."""
    from pipeline.cams.coarse_request import coarse_request
    from pipeline.cams.inputs import METHOD_INPUTS
    from pipeline.params import PipelineParams

    monkeypatch.chdir(tmp_path)  # the request digests the CLIP descriptor the first phase reads
    (tmp_path / METHOD_INPUTS["clip"]).parent.mkdir(parents=True)
    (tmp_path / METHOD_INPUTS["clip"]).write_text("{}")

    padded = coarse_request(PipelineParams.model_validate({"cam": {"method": "fma"}}))["inference"]
    assert "fit" not in padded  # the request of every existing run is unchanged
    stretched = PipelineParams.model_validate({"cam": {"method": "fma", "inference": {"fit": "stretch"}}})
    assert coarse_request(stretched)["inference"]["fit"] == "stretch"


def test_square_views_and_square_training_images() -> None:
    """ViT-PCM's sizes: a 20 × 30 image is seen as a 32 × 32 square (its aspect not kept), the maps resized back;
    a training image is resized to the crop before augmentation."""
    from pipeline.tta import multiscale_sum

    seen = []
    total, views = multiscale_sum(lambda b: seen.append(tuple(b.shape[-2:])) or b[:, :1], torch.rand(3, 20, 30),
                                  (1.0, 0.5), flip=False, square=32)  # fmt: skip
    assert seen == [(32, 32), (16, 16)] and total.shape == (1, 20, 30) and views == 2
    from pipeline.cams.params import CamInferenceParams

    with pytest.raises(ValueError, match="fit: square takes a square_size"):
        CamInferenceParams(fit="square")


def test_warmup_starts_and_cosine_ends_at_the_given_rates() -> None:
    """timm's warmup_lr_init and lr_min (MCTformer: 1e-6 and 1e-5) as fractions of the peak; 0 and 0 unchanged."""
    from pipeline.trainer import warmup_cosine

    factor = warmup_cosine(10, 0.2, start=0.1, floor=0.2)
    assert [factor(0), factor(1)] == [pytest.approx(0.1 + 0.9 * 0.5), pytest.approx(1.0)]
    assert factor(2) == pytest.approx(1.0) and factor(10) == pytest.approx(0.2)
    plain, default = warmup_cosine(10, 0.2), warmup_cosine(10, 0.2, 0.0, 0.0)
    assert [plain(s) for s in range(11)] == [default(s) for s in range(11)]

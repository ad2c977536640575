"""CLIMS: its loss terms on hand-computed similarities, the masked views in CLIP's input space, its start from
plain CAM's weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.cams.coarse_request import coarse_request
from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.clims import losses
from pipeline.cams.methods.clims.model import Clims
from pipeline.cams.methods.clims.params import ClimsParams
from pipeline.cams.params import CamParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.cams.train import describe_backbone, save_cam_method
from pipeline.data.loading import IMAGENET_MEAN, IMAGENET_STD
from pipeline.params import PipelineParams
from tests.clip_fixtures import write_tiny_clip

CLASSES = ("cat", "dog", "car")


def test_object_and_background_matching_are_eq_5_on_clamped_cosines() -> None:
    # −mean log s: 0.5 and a cosine above 0.9999 clamped to it
    expected = -(math.log(0.5) + math.log(0.9999)) / 2
    assert losses.object_matching(torch.tensor([0.5, 1.0])).item() == pytest.approx(expected)
    # −mean log(1 − s): 0.2, and −0.5 clamped to 1e-4
    expected = -(math.log(0.8) + math.log(1 - 1e-4)) / 2
    assert losses.background_matching(torch.tensor([0.2, -0.5])).item() == pytest.approx(expected)


def test_background_suppression_sums_the_prompts_above_the_threshold() -> None:
    cosines = torch.tensor([[0.3, 0.1], [0.5, 0.26]])  # (pairs, background prompts); 0.26 is not above 0.26
    expected = -(math.log(0.7) + math.log(0.5))
    assert losses.background_suppression(cosines, 0.26).item() == pytest.approx(expected)
    assert losses.background_suppression(torch.tensor([[1.0]]), 0.26).isfinite()  # clamped, not −log 0
    assert losses.area(torch.tensor([[[[0.2, 0.4]], [[0.0, 0.6]]]])).item() == pytest.approx(0.3)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A tiny stand-in CLIP and a plain-CAM first phase, as the pipeline writes them."""
    torch.manual_seed(0)
    first = CamParams.model_validate({"method": "cam", "cam": {"backbone": "resnet"}})
    plain = CAM_METHODS.get("cam").build(first.selected(), BuildContext(class_names=CLASSES))
    save_cam_method(tmp_path / "coarse.pt", first, CLASSES, plain)
    return {"clip": write_tiny_clip(tmp_path / "clip"), "coarse_model": tmp_path / "coarse.pt", "plain": plain}


def build(inputs: dict, pretrained: bool = True) -> Clims:
    context = BuildContext(class_names=CLASSES, pretrained=pretrained, inputs=inputs)
    return Clims.build(ClimsParams(), context)


def test_views_are_masked_in_pixel_space_then_normalised_as_clip_expects(inputs: dict) -> None:
    model = build(inputs)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = torch.tensor([0.2, 0.5, 0.9])[:, None, None].expand(3, 48, 48)  # RGB, one colour
    images = ((pixels - mean) / std)[None]  # as the network sees it (ImageNet's normalisation)
    cams = torch.full((1, 3, 3, 3), 0.25)
    objects, backgrounds, _, classes = model.clip_views(images, cams, torch.tensor([[0.0, 1.0, 1.0]]))
    assert classes.tolist() == [1, 2] and objects.shape == (2, 3, 32, 32)  # the tiny CLIP's input size
    clip_mean, clip_std = torch.tensor(model.clip.mean), torch.tensor(model.clip.std)
    rgb = torch.tensor([0.2, 0.5, 0.9])
    torch.testing.assert_close(objects[0, :, 5, 7], (0.25 * rgb - clip_mean) / clip_std)
    torch.testing.assert_close(backgrounds[1, :, 0, 0], (0.75 * rgb - clip_mean) / clip_std)


def test_clims_starts_from_plain_cam_and_trains_the_network_through_the_frozen_clip(inputs: dict) -> None:
    model = build(inputs).train()
    plain = inputs["plain"].network.state_dict()
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in plain.items())
    assert not any(m.training for m in model.clip_model.modules())
    assert not torch.equal(build(inputs, pretrained=False).network.classifier.weight, model.network.classifier.weight)
    images, targets = torch.randn(2, 3, 48, 48), torch.tensor([[1.0, 0, 1], [0, 0, 0]])
    terms = model.training_step(images, targets)
    assert set(terms) == {"object", "background", "suppression", "area"}
    sum(terms.values()).backward()
    assert model.network.classifier.weight.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.clip_model.parameters())
    assert set(model.saved_state()) == {k for k in model.state_dict() if k.startswith("network.")}
    nothing = model.training_step(images, torch.zeros(2, 3))  # no present class: the area term alone moves
    assert nothing["object"].item() == 0 and nothing["area"].item() > 0


def test_clims_refuses_a_first_phase_of_another_method(inputs: dict, tmp_path: Path) -> None:
    torch.save({"method": "usage", "params": {}, "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: CLIMS starts from a 'cam' model, found 'usage'"):
        build({**inputs, "coarse_model": tmp_path / "other.pt"})


def test_clims_requests_plain_cams_training_only() -> None:
    requests = coarse_request(PipelineParams.model_validate({"cam": {"method": "clims"}}))
    assert requests["training"]["method"] == "cam" and requests["training"]["params"] == CamParams().cam.model_dump(
        mode="json"
    )
    assert requests["inference"]["method"] == requests["seeding"]["method"] == "none"  # no coarse CAMs, no seeds


def test_clims_is_described_by_its_first_phases_network() -> None:
    assert describe_backbone(CamParams(method="clims")) == "resnet10 + clip"


def test_the_voc_preset_runs_clims_own_loss_weights() -> None:
    """CLIMS's run_sample.py and README: --hyper 10,24,1,0.2 (object, background, suppression, area); 25 is POLE's."""
    import yaml

    from tests.conftest import REPO

    preset = yaml.safe_load((REPO / "presets/clims_voc.yaml").read_text())
    assert preset["cam"]["clims"]["weights"] == {"object": 10.0, "background": 24.0, "suppression": 1.0, "area": 0.2}

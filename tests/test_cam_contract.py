"""The CAM-method contract: every registered method, on each backbone, trains a step, saves, reloads, infers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.cams.contract import BuildContext, CamMethod, CamModel
from pipeline.cams.extract import multiscale_cam
from pipeline.cams.inputs import METHOD_INPUTS, method_inputs
from pipeline.cams.params import CamParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.cams.train import load_cam_method, save_cam_method
from pipeline.compare import combinations
from tests.clip_fixtures import write_tiny_clip

CLASSES = ("cat", "dog", "car")


@pytest.fixture(autouse=True)
def vocab_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a directory holding the vocab stage's outputs, which methods with extra inputs read."""
    monkeypatch.chdir(tmp_path)
    # the i-th of CLASSES and c<i> (the names tiny_method builds with) share clusters, so a reload fits
    membership = {name: ["animal", "pet"] if i % 2 else ["thing"] for names in (CLASSES, ("c0", "c1", "c2", "c3"))
                  for i, name in enumerate(names)}  # fmt: skip
    clusters = {"clusters": {}, "membership": membership}
    synonyms = {"synonyms": {name: [name] for name in membership}}
    for name, content in (("clusters", clusters), ("synonyms", synonyms)):
        path = METHOD_INPUTS[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    write_tiny_clip(METHOD_INPUTS["clip"].parent)
    METHOD_INPUTS["coarse_seeds"].parent.mkdir(parents=True, exist_ok=True)
    METHOD_INPUTS["coarse_seeds"].write_bytes(b"")  # its presence only: training steps here get seeds directly
    choices = {"method": "pole", "template": "a photo of {}.", "candidates": {name: [name, f"{name}ish"] for name in
               CLASSES}, "choices": {"a": {"cat": "catish"}}}  # fmt: skip
    METHOD_INPUTS["prompt_choices"].write_text(json.dumps(choices))  # POLE's selection
    # CLIMS's and POLE's first phase: a trained plain CAM (any weights will do)
    save_cam_method(METHOD_INPUTS["coarse_model"], cam_params("cam", "resnet"), CLASSES, tiny_method("cam", "resnet"))


def cam_params(method: str, backbone: str | None, **section: Any) -> CamParams:
    """Tiny params of ``method`` on ``backbone`` (the demo's tiny ViT; ResNet-10; None: the method's only one)."""
    choice = {"backbone": backbone} if backbone else {}
    return CamParams.model_validate({"method": method, method: {**choice, **section}})


def tiny_method(method: str, backbone: str | None, classes: int = 3, **section: Any) -> CamMethod:
    """A freshly built method in eval mode, seeded."""
    torch.manual_seed(0)
    params = cam_params(method, backbone, **section).selected()
    names = CLASSES if classes == len(CLASSES) else tuple(f"c{i}" for i in range(classes))  # CLIP-ES's prompts
    context = BuildContext(class_names=names, inputs=method_inputs(params))
    return CAM_METHODS.get(method).build(params, context).eval()


METHODS = list(dict.fromkeys((combination.method, combination.backbone) for combination in combinations()))


def test_every_registered_method_is_covered() -> None:
    assert {method for method, _ in METHODS} == set(CAM_METHODS.names())


def check_training_step(model: CamMethod, cam: CamParams, images: torch.Tensor, targets: torch.Tensor) -> None:
    """Every trainable parameter in exactly one group; one step gives finite named losses and trains something."""
    groups = model.parameter_groups(cam.selected().training)
    grouped = [p for group in groups for p in group["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(p.requires_grad for p in model.parameters())
    optimizer = model.optimizer(groups, cam.selected().training)
    seeds = []  # a two-phase method's coarse seeds: classes as c + 1, some pixels ignored
    if "coarse_seeds" in type(cam.selected()).extra_inputs:
        seeds = [torch.randint(0, 4, (len(images), *images.shape[-2:]))]
        seeds[0][:, :8] = 255
    if model.per_image_inputs() is not None:  # POLE's prompt choices: a candidate index per image and class
        seeds.append(torch.randint(0, 2, targets.shape))
    losses = model.training_step(images, targets, *seeds)
    assert losses and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    before = [p.detach().clone() for p in grouped]
    sum(losses.values()).backward()
    optimizer.step()
    model.after_optimizer_step()
    assert any(not torch.equal(a, p) for a, p in zip(before, grouped, strict=True)), "a step must train something"


@pytest.mark.parametrize(("method", "backbone"), METHODS)
def test_build_train_step_save_load_infer(method: str, backbone: str | None, tmp_path: Path) -> None:
    cam = cam_params(method, backbone)
    model = tiny_method(method, backbone).train()
    assert isinstance(model, CamMethod) and isinstance(cam.selected(), type(model).params_model)
    images, targets = torch.randn(4, 3, 48, 48), torch.tensor([[1.0, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    if type(cam.selected()).trains:
        check_training_step(model, cam, images, targets)
    else:  # training-free (CLIP-ES): nothing to train, nothing of its own saved
        assert not any(p.requires_grad for p in model.parameters()) and model.saved_state() == {}

    model.eval()
    path = tmp_path / "model.pt"
    save_cam_method(path, cam, CLASSES, model)
    reloaded = load_cam_method(path, cam, CLASSES, torch.device("cpu"))
    image = torch.randn(3, 40, 56)  # not a multiple of the stride or patch: padded
    cams = multiscale_cam(model, image, [0, 2], (1.0, 0.5), True)
    background = int(model.has_background)  # the background map comes first
    assert cams.shape == (2 + background, 40, 56) and float(cams.min()) >= 0 and float(cams.max()) <= 1
    torch.testing.assert_close(multiscale_cam(reloaded, image, [0, 2], (1.0, 0.5), True), cams)
    if type(cam.selected()).has_decoder:  # a single-stage method's own maps, background first
        decoded = multiscale_cam(reloaded, image, [0, 2], (1.0,), False, head="decoder")
        assert decoded.shape == (3, 40, 56) and float(decoded.min()) >= 0 and float(decoded.max()) <= 1
    with torch.no_grad():
        assert model.image_scores(images).shape == (4, 3)
        raw = model.infer_cams(images, [1])
    assert raw.shape[:2] == (4, 1 + background) and 48 % raw.shape[-1] == 0
    assert len(model.input_mean) == len(model.input_std) == 3


@pytest.mark.parametrize(("method", "backbone"), METHODS)
@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_a_batch_of_images_gets_each_images_own_maps(method: str, backbone: str | None, fit: str) -> None:
    """Batched extraction (``cam.inference.batch_size``) is allowed where an image's maps do not depend on the
    other images of its batch: three images seen together get the maps each gets alone."""
    model = tiny_method(method, backbone)
    images = torch.randn(3, 3, 40, 56)
    together = multiscale_cam(model, images, [0, 2], (1.0, 0.5), True, fit=fit)
    alone = torch.stack([multiscale_cam(model, image, [0, 2], (1.0, 0.5), True, fit=fit) for image in images])
    if model.batched_inference:
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    else:
        assert not torch.allclose(together, alone, atol=1e-5, rtol=1e-4), "batched_inference may be True"


def test_parameter_groups_carry_their_own_learning_rates() -> None:
    cam = cam_params("usage", "resnet", training={"lr": 0.01, "backbone_lr_scale": 0.1})
    model = tiny_method("usage", "resnet", training={"lr": 0.01, "backbone_lr_scale": 0.1})
    groups = {g["name"]: g for g in model.parameter_groups(cam.selected().training)}
    assert groups["backbone"]["lr"] == pytest.approx(0.001) and groups["heads"]["lr"] == 0.01
    teacher = {id(p) for p in model.teacher.parameters()}
    assert not teacher & {id(p) for g in groups.values() for p in g["params"]}, "the EMA teacher is not optimised"


def test_frozen_weights_are_never_saved_and_are_rebuilt_on_load() -> None:
    class Frozen(CamModel):
        frozen_prefixes = ("foundation.",)

        def __init__(self) -> None:
            super().__init__()
            self.foundation = torch.nn.Linear(2, 2).requires_grad_(False)
            self.head = torch.nn.Linear(2, 1)

    model = Frozen()
    assert set(model.saved_state()) == {"head.weight", "head.bias"}
    other = Frozen()
    other.load_saved(model.saved_state())
    torch.testing.assert_close(other.head.weight, model.head.weight)
    with pytest.raises(ValueError, match="missing"):
        other.load_saved({"head.weight": model.head.weight})


def test_load_refuses_a_checkpoint_of_another_method(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_cam_method(path, cam_params("cam", "resnet"), CLASSES, tiny_method("cam", "resnet"))
    with pytest.raises(ValueError, match="trained with CAM method 'cam', params select 'usage'"):
        load_cam_method(path, cam_params("usage", "resnet"), CLASSES, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="CAM model not found"):
        load_cam_method(tmp_path / "none.pt", cam_params("cam", "resnet"), CLASSES, torch.device("cpu"))


def test_the_decoder_head_needs_a_method_that_has_one() -> None:
    assert not CamParams.model_validate({"method": "apc", "inference": {"head": "decoder"}}).method_problems()
    problems = CamParams.model_validate({"method": "cam", "inference": {"head": "decoder"}}).method_problems()
    assert problems == ["  cam.inference.head: decoder needs a method with a segmentation decoder; 'cam' has none"]

"""POLE: the synonym selection (eq. 6) on a toy CLIP set by hand, the adaptors (eq. 7–8), the per-image prompts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cams.coarse_request import coarse_request
from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.pole import selection
from pipeline.cams.methods.pole.adaptors import Adaptor
from pipeline.cams.methods.pole.model import Pole
from pipeline.cams.methods.pole.params import PoleParams
from pipeline.cams.params import CamParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.cams.train import save_cam_method
from pipeline.data.manifest import Entry, Manifest
from pipeline.params import PipelineParams
from tests.clip_fixtures import write_tiny_clip
from tests.test_cam_store import write_store


def test_eq6_takes_the_candidate_of_highest_cosine_among_the_real_ones() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[[0.0, 1.0], [3.0, 0.1], [1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0], [0.0, 5.0]]])
    valid = torch.tensor([[True, True, True], [True, True, False]])  # the second pair has two candidates
    # cosines: (0, 0.9994, 1) → the third; (0.707, 0, padded) → the first, never the padded exact match
    assert selection.select_synonyms(images, text, valid).tolist() == [2, 0]


def test_candidates_put_the_ground_truth_name_first_and_list_each_word_once() -> None:
    synonyms = {"diningtable": ["diningtable", "table", "table"], "cat": ["cat", "kitten"]}
    words = selection.candidate_words(("diningtable", "cat"), synonyms, {"cat": "kitty"}, None)
    assert words == {"diningtable": ["dining table", "table"], "cat": ["cat", "kitty", "kitten"]}


def test_poles_candidates_are_four_with_the_name_and_person_is_one() -> None:
    """POLE's chosen prompts for person were player, people, person, human (implementation notes): the name is a
    candidate beside CLIMS's "player", and the four include it."""
    synonyms = {"person": ["people", "human", "man", "individual"]}
    words = selection.candidate_words(("person",), synonyms, {"person": "player"}, 4)
    assert words == {"person": ["person", "player", "people", "human"]}


class ToyClip:
    """A CLIP whose text embeddings are set by hand (a colour per word) and whose image embedding is the mean
    colour of its input, so the winner of eq. 6 is known: the word of the colour the CAM covers."""

    visual = SimpleNamespace(image_size=(4, 4))
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    model = SimpleNamespace(logit_scale=torch.tensor(1.0))
    colours = {"cat": (1.0, 0.0, 0.0), "kitten": (0.0, 1.0, 0.0), "dog": (0.0, 0.0, 1.0)}

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.colours[t.removeprefix("a photo of ").removesuffix(".")] for t in texts])


def test_selection_masks_the_image_by_the_cam_and_picks_the_word_of_what_it_covers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.setattr(selection, "load_clip", lambda descriptor, device: ToyClip())
    monkeypatch.setattr(selection, "encode_image", lambda visual, views: views.mean(dim=(2, 3)))
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[:, :2, 0] = 255  # red left half ("cat"), green right half ("kitten")
    pixels[:, 2:, 1] = 255
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.fromarray(pixels).save(tmp_path / "img" / f"{name}.png")
    entries = [Entry("a", "img/a.png", "a.png", 4, 4, (0,)), Entry("b", "img/b.png", "b.png", 4, 4, (0,))]
    manifest = Manifest("t", tmp_path, ("cat", "dog"), {"train": entries})
    right, left = np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 4), np.float32)
    right[0, :, 2:], left[0, :, :2] = 1.0, 1.0
    cams = write_store(tmp_path, {"a": (right, [0]), "b": (left, [0])}, {})
    synonyms = tmp_path / "synonyms.json"
    synonyms.write_text(json.dumps({"synonyms": {"cat": ["cat", "kitten"], "dog": ["dog"]}}))
    request = {"method": "pole", "template": "a photo of {}.", "class_words": {}, "cams": "cams.zarr.zip",
               "candidates": None}
    out, stats_out = tmp_path / "prompts.json", tmp_path / "stats.json"
    assert cams == tmp_path / "cams.zarr.zip"
    stats = selection.select_prompts(request, manifest, tmp_path, synonyms, tmp_path / "clip.json",
                                     torch.device("cpu"), out, stats_out)  # fmt: skip
    prompts = json.loads(out.read_text())
    assert prompts["choices"] == {"a": {"cat": "kitten"}, "b": {"cat": "cat"}}
    assert prompts["candidates"] == {"cat": ["cat", "kitten"], "dog": ["dog"]}
    assert stats == json.loads(stats_out.read_text())
    assert stats["per_class"]["cat"] == {"cat": 1, "kitten": 1} and stats["ground_truth_share"] == 0.5


def test_adaptor_is_eq_7_blend_of_the_bottleneck_and_the_embedding() -> None:
    adaptor = Adaptor(dim=4, reduction=2, ratio_init=0.2)
    assert adaptor.ratio.tolist() == pytest.approx([0.2] * 4) and adaptor.down.bias is None and adaptor.up.bias is None
    with torch.no_grad():
        adaptor.down.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0]]))  # W₁ᵀ: d → d/2
        adaptor.up.weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0], [0, -2.0]]))  # W₂ᵀ: d/2 → d
        adaptor.ratio.copy_(torch.tensor([0.2, 0.2, 0.5, 1.0]))
    v = torch.tensor([[2.0, 3.0, -1.0, 4.0]])
    # A(v) = ReLU([2, −3]) W₂ = [2, 0] → [2, 0, 2, 0]; v* = r A(v) + (1 − r) v
    expected = [0.2 * 2 + 0.8 * 2, 0.2 * 0 + 0.8 * 3, 0.5 * 2 + 0.5 * -1, 1.0 * 0 + 0.0 * 4]
    assert adaptor(v)[0].tolist() == pytest.approx(expected)


CLASSES = ("cat", "dog", "car")


@pytest.fixture
def pole(tmp_path: Path) -> Pole:
    torch.manual_seed(0)
    first = CamParams.model_validate({"method": "cam", "cam": {"backbone": "resnet"}})
    plain = CAM_METHODS.get("cam").build(first.selected(), BuildContext(class_names=CLASSES))
    save_cam_method(tmp_path / "coarse.pt", first, CLASSES, plain)
    choices = tmp_path / "prompts.json"
    candidates = {"cat": ["cat", "kitten"], "dog": ["dog"], "car": ["car", "auto"]}
    chosen = {"a": {"cat": "kitten", "car": "car"}, "b": {"dog": "dog"}}
    choices.write_text(json.dumps({"method": "pole", "template": "a", "candidates": candidates, "choices": chosen}))
    inputs = {"clip": write_tiny_clip(tmp_path / "clip"), "coarse_model": tmp_path / "coarse.pt",
              "prompt_choices": choices}  # fmt: skip
    return Pole.build(PoleParams(), BuildContext(class_names=CLASSES, inputs=inputs))


def test_each_pair_gets_the_prompt_chosen_for_its_image(pole: Pole) -> None:
    assert pole.per_image_inputs()["a"].tolist() == [1, 0, 0] and pole.per_image_inputs()["b"].tolist() == [0, 0, 0]
    kitten, auto = pole.clip.encode_text(["a photo of kitten.", "a photo of auto."])
    choices = torch.stack([pole.per_image_inputs()["a"], torch.tensor([0, 0, 1])])  # image 1 chose "auto"
    text = pole.pair_text(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 2]), choices)
    assert torch.allclose(text[0], kitten, atol=1e-5) and torch.allclose(text[2], auto, atol=1e-5)
    assert torch.allclose(text[1], pole.clip.encode_text(["a photo of cat."])[0], atol=1e-5)


def test_training_reaches_the_adaptors_and_the_suppression_bypasses_them(pole: Pole) -> None:
    images, targets = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    choices = torch.stack([pole.per_image_inputs()["a"], pole.per_image_inputs()["b"]])
    losses = pole.training_step(images, targets, choices)
    assert set(losses) == {"object", "background", "suppression", "area"}
    losses["suppression"].backward(retain_graph=True)
    assert all(p.grad is None for p in (*pole.image_adaptor.parameters(), *pole.text_adaptor.parameters()))
    (losses["object"] + losses["background"]).backward()
    assert pole.image_adaptor.ratio.grad.abs().sum() > 0 and pole.text_adaptor.down.weight.grad.abs().sum() > 0
    assert {k.split(".")[0] for k in pole.saved_state()} == {"network", "image_adaptor", "text_adaptor"}


def test_pole_requests_the_first_phases_cams_and_a_selection_but_no_seeds() -> None:
    params = PipelineParams.model_validate({"cam": {"method": "pole"}})
    request = coarse_request(params)
    assert request["training"]["method"] == "cam" and request["seeding"]["method"] == "none"
    assert request["inference"] == {"method": "cam", "scales": [1.0, 0.5, 1.5, 2.0], "flip": True}
    assert request["selection"] == {"method": "pole", "template": "a photo of {}.", "class_words": {},
                                    "cams": "artifacts/coarse/cams.zarr.zip", "candidates": None}  # fmt: skip
    clims = coarse_request(PipelineParams.model_validate({"cam": {"method": "clims"}}))
    assert clims["selection"]["method"] == clims["inference"]["method"] == "none"


def test_the_baseline_cams_may_be_any_store_inside_the_repository() -> None:
    assert PoleParams(selection={"cams": "baselines/clip_es.zarr.zip"}).selection.cams == "baselines/clip_es.zarr.zip"
    for bad in ("/elsewhere/cams.zarr.zip", "../cams.zarr.zip", "artifacts/seeds.zip"):
        with pytest.raises(ValueError, match="inside the repository"):
            PoleParams(selection={"cams": bad})

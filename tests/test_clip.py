"""CLIP models, the stand-in's corpus and request, and CLIP-ES's equations on hand-computed tensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from pydantic import ValidationError

from pipeline.cams.methods.clip_es import caa
from pipeline.cams.methods.clip_es.gradcam import gradcam, softmax_scores
from pipeline.cams.methods.clip_es.params import ClipEsParams
from pipeline.clip.build import build_clip
from pipeline.clip.corpus import background_words, caption
from pipeline.clip.models import ConvStem, load_clip, open_clip_weights
from pipeline.clip.params import OpenClipParams, StandInClipParams
from pipeline.clip.request import clip_request
from pipeline.clip.vision import embed_tokens, encode_image, resized_positions, vision_pass
from pipeline.data.datasets import prepare_dataset
from pipeline.params import DataParams, ParamsError, PipelineParams, validate_params
from tests.clip_fixtures import register_tiny_open_clip, write_openai_torchscript, write_tiny_clip


def test_softmax_runs_over_the_present_classes_and_the_background_prompts_only() -> None:
    image = torch.tensor([2.0, 0.0])  # normalised to (1, 0)
    present = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    background = torch.tensor([[-1.0, 0.0]])
    scores = softmax_scores(image, present, background, torch.tensor(2.0))
    # logits 2·cos: 2, 0 (present), −2 (background); an absent class's prompt takes no part
    total = math.exp(2) + math.exp(0) + math.exp(-2)
    torch.testing.assert_close(scores, torch.tensor([math.exp(2) / total, 1 / total]))
    # a batch marks the present classes instead (here the first alone): an absent class takes no part, scores 0
    batch = softmax_scores(image[None], present, background, torch.tensor(2.0), torch.tensor([[True, False]]))
    torch.testing.assert_close(batch[0], torch.tensor([math.exp(2) / (math.exp(2) + math.exp(-2)), 0.0]))


def test_gradcam_is_the_relu_of_the_channel_sum_weighted_by_mean_gradients() -> None:
    features = torch.tensor([[[1.0, 2.0]], [[3.0, -4.0]]], requires_grad=True)  # K=2, h=1, w=2
    score = (features[0] * torch.tensor([[1.0, 3.0]])).sum() - 2 * features[1].sum()
    # ∂s/∂F0 = (1, 3) → w0 = 2; ∂s/∂F1 = (−2, −2) → w1 = −2; M = ReLU(2·(1, 2) − 2·(3, −4)) = ReLU(−4, 12)
    torch.testing.assert_close(gradcam(score, features), torch.tensor([[0.0, 12.0]]))


def test_sinkhorn_normalises_columns_then_rows() -> None:
    matrix = torch.tensor([[1.0, 3.0], [1.0, 1.0]])
    # columns: [[.5, .75], [.5, .25]]; rows: [[.4, .6], [2/3, 1/3]]
    torch.testing.assert_close(caa.sinkhorn(matrix, 1), torch.tensor([[0.4, 0.6], [2 / 3, 1 / 3]]))
    assert torch.equal(caa.sinkhorn(matrix, 0), matrix)


def test_affinity_averages_the_last_blocks_symmetrises_and_raises_to_the_power() -> None:
    first, last = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # the last block alone, no Sinkhorn: symmetric already; squared → identity
    torch.testing.assert_close(caa.affinity([first, last], blocks=1, rounds=0, power=2), torch.eye(2))
    # both blocks averaged: all 0.5; symmetric; squared: all 0.5
    torch.testing.assert_close(caa.affinity([first, last], blocks=2, rounds=0, power=2), torch.full((2, 2), 0.5))


def test_box_mask_is_the_union_of_the_regions_bounding_boxes() -> None:
    cam = torch.zeros(6, 6)
    cam[3:5, 3] = 0.9
    cam[4, 4] = 0.8  # an L shape: its box is 3:5 × 3:5
    cam[0, 0] = 1.0
    cam[5, 0] = 0.3  # below 0.4 × max
    expected = torch.zeros(6, 6)
    expected[0, 0] = 1.0
    expected[3:5, 3:5] = 1.0
    assert torch.equal(caa.box_mask(cam, 0.4), expected)
    assert not caa.box_mask(torch.zeros(3, 3), 0.4).any()


def test_box_mask_follows_clip_es_contours_and_clamped_exclusive_box_ends() -> None:
    """CLIP-ES's scoremap2bbox: OpenCV's contours join a diagonal pair of cells into one box; a box end is
    clamped to W − 1 / H − 1 and the slice excludes it, so the last row and column never enter the mask."""
    diagonal = torch.zeros(6, 6)
    diagonal[1, 1] = diagonal[2, 2] = 1.0
    expected = torch.zeros(6, 6)
    expected[1:3, 1:3] = 1.0  # one 2 × 2 box (4-connected labelling gave two single cells)
    assert torch.equal(caa.box_mask(diagonal, 0.4), expected)

    corner = torch.zeros(5, 5)
    corner[2:, 3:] = 1.0  # a region touching the right and bottom borders
    expected = torch.zeros(5, 5)
    expected[2:4, 3:4] = 1.0  # rows 2..3, column 3: row 4 and column 4 are never in the mask
    assert torch.equal(caa.box_mask(corner, 0.4), expected)

    quantised = torch.zeros(4, 4)
    quantised[1, 1], quantised[2, 2] = 1.0, 0.40  # uint8 255 and 102; OpenCV keeps only > int(0.4 · 255) = 102
    expected = torch.zeros(4, 4)
    expected[1, 1] = 1.0
    assert torch.equal(caa.box_mask(quantised, 0.4), expected)


def test_refine_masks_the_affinity_columns_and_min_max_normalises() -> None:
    cam = torch.tensor([[1.0, 0.2], [0.0, 0.0]])
    matrix = torch.full((4, 4), 0.25) + torch.eye(4)
    # box of cam ≥ 0.5: pixel 0 only → column 0 kept: refined_i = A_i0 · 1 = 1.25 (i = 0) or 0.25
    torch.testing.assert_close(caa.refine(cam, matrix, 0.5), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize(("text_tower", "stem"), [("native", "conv"), ("minilm", "conv"), ("native", "patch")])
def test_stand_in_descriptor_round_trip_and_any_input_size(text_tower: str, stem: str, tmp_path: Path) -> None:
    clip = load_clip(write_tiny_clip(tmp_path / "clip", text_tower, stem=stem))
    assert isinstance(clip.visual.conv1, ConvStem) == (stem == "conv")
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert clip.encode_text(["a photo of a cat.", "grass"]).shape == (2, 16)
    native = torch.randn(2, 3, 32, 32)
    # at the trained size, our block-by-block forward is open_clip's own
    torch.testing.assert_close(encode_image(clip.visual, native), clip.model.encode_image(native))
    assert torch.equal(resized_positions(clip.visual, (4, 4)), clip.visual.positional_embedding)
    assert resized_positions(clip.visual, (5, 7)).shape == (36, 32)
    passed = vision_pass(clip.visual, torch.randn(1, 3, 40, 56))
    assert passed.features.shape == (1, 32, 5, 7) and passed.features.requires_grad
    assert len(passed.attentions) == 2 and passed.attentions[0].shape == (1, 35, 35)
    rows = passed.attentions[-1].sum(dim=-1)  # softmax rows without the class token's column: in (0, 1]
    assert bool((rows > 0).all()) and bool((rows <= 1 + 1e-6).all())


def test_vision_pass_embedding_is_the_mean_patch_token_of_the_plain_forward(tmp_path: Path) -> None:
    clip = load_clip(write_tiny_clip(tmp_path / "clip"))
    images = torch.randn(1, 3, 48, 40)
    x, _ = embed_tokens(clip.visual, images)
    plain = clip.visual.ln_post(clip.visual.transformer(x))[:, 1:].mean(dim=1) @ clip.visual.proj
    torch.testing.assert_close(vision_pass(clip.visual, images).image_embedding, plain)


def test_conv_stem_has_the_patch_grid_and_its_stride_must_be_the_patch_size() -> None:
    stem = ConvStem(width=24, channels=(4, 8, 16), depth=2)
    assert stem(torch.randn(2, 3, 40, 56)).shape == (2, 24, 5, 7)  # stride 8: the grid of 8-pixel patches
    convs = [m for m in stem.layers if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1, 1]  # each stage's first 3×3 halves, the 1×1 last
    with pytest.raises(ValidationError, match="stride 4, not patch_size 8"):
        StandInClipParams(stem_channels=(16, 32))
    StandInClipParams(stem="patch", stem_channels=(16, 32))  # no stem: its channels play no part


def test_missing_weights_name_the_file_and_where_to_get_them(tmp_path: Path) -> None:
    missing = tmp_path / "ViT-B-16.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        open_clip_weights(OpenClipParams(checkpoint=str(missing)))
    with pytest.raises(FileNotFoundError, match="openaipublic.azureedge.net.*clip.open_clip.checkpoint"):
        open_clip_weights(OpenClipParams(cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="known:"):
        open_clip_weights(OpenClipParams(pretrained="no-such-tag"))
    with pytest.raises(FileNotFoundError, match="pretrain_clip"):
        load_clip(tmp_path / "clip.json")


def test_the_stand_in_is_requested_only_by_clip_methods() -> None:
    assert clip_request(PipelineParams())["source"] == "none"
    request = clip_request(PipelineParams.model_validate({"cam": {"method": "clip_es"}}))
    assert request["source"] == "pretrain_here" and request["look"]["image_size"] == 64
    assert "seed" not in request["look"]  # the benchmark's seed never reaches the corpus
    real = clip_request(PipelineParams.model_validate({"cam": {"method": "clip_es"}, "clip": {"source": "open_clip"}}))
    assert real == {"source": "open_clip", "open_clip": OpenClipParams().model_dump(mode="json")}


def test_the_stand_in_refuses_real_data_and_the_benchmarks_own_seed() -> None:
    with pytest.raises(ParamsError, match="use clip.source: open_clip"):
        validate_params({"cam": {"method": "clip_es"}, "data": {"source": "voc"}}, "params.yaml")
    with pytest.raises(ParamsError, match="benchmark's own images"):
        validate_params({"cam": {"method": "clip_es"}, "clip": {"pretrain_here": {"corpus_seed": 0}}}, "params.yaml")
    validate_params({"data": {"source": "voc"}}, "params.yaml")  # no CLIP method: no CLIP needed


def test_captions_name_objects_in_natural_words_and_contexts_at_their_rate() -> None:
    rng = np.random.default_rng(0)
    plain = caption((9, 16), ("grass",), 0.0, rng)  # cow, sheep
    assert any(w in plain for w in ("cow", "cattle")) and any(w in plain for w in ("sheep", "lamb"))
    assert "grass" not in plain
    assert "grass" in caption((9,), ("grass",), 1.0, rng)
    assert tuple(ClipEsParams().background) == background_words()


def test_pretrain_clip_writes_a_loadable_stand_in_and_its_curve(tmp_path: Path) -> None:
    """The stand-in (48 px, its corpus rendered at that size) is scored zero-shot on 32 px benchmark images."""
    data = DataParams.model_validate({"synthetic": {"num_train": 4, "num_val": 8, "image_size": 32}})
    manifest = prepare_dataset(data, tmp_path / "dataset")
    params = PipelineParams.model_validate({"data": data.model_dump(), "cam": {"method": "clip_es"}, "clip": {
        "pretrain_here": {"num_images": 32, "epochs": 2, "batch_size": 16, "image_size": 48, "width": 32,
                          "head_width": 16, "embed_dim": 16, "text_tower": "native", "native_text_width": 32,
                          "native_text_layers": 1}}})  # fmt: skip
    metrics = build_clip(clip_request(params), manifest, tmp_path / "dataset", torch.device("cpu"), tmp_path / "clip")
    assert metrics["source"] == "pretrain_here" and 0 <= metrics["val_zero_shot_mAP"] <= 1
    curve = (tmp_path / "clip/curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,loss,contrastive,val_zero_shot_mAP,val_zero_shot_mAP_cosine" and len(curve) == 3
    assert sorted(p.name for p in (tmp_path / "clip/model").iterdir()) == ["clip.json", "stand_in.pt"]
    assert not (tmp_path / "clip/.work").exists()
    clip = load_clip(tmp_path / "clip/model/clip.json")
    assert clip.encode_text(["a photo of a cow."]).shape == (1, 16)
    none = build_clip(clip_request(PipelineParams()), manifest, tmp_path / "dataset", torch.device("cpu"),
                      tmp_path / "none")  # fmt: skip
    header = "epoch,loss,val_zero_shot_mAP,val_zero_shot_mAP_cosine\n"
    assert none == {"source": "none"} and (tmp_path / "none/curve.csv").read_text() == header
    # A real CLIP is described with its weights' digest: new weights change the descriptor the CLIP stages read.
    name = register_tiny_open_clip(tmp_path / "configs")
    write_openai_torchscript(open_clip.create_model(name).state_dict(), tmp_path / "w.pt")
    real = clip_request(PipelineParams.model_validate({"cam": {"method": "clip_es"}, "clip": {
        "source": "open_clip", "open_clip": {"model": name, "checkpoint": str(tmp_path / "w.pt")}}}))  # fmt: skip
    for digest in ("a" * 64, "b" * 64):
        build_clip(real, manifest, tmp_path / "dataset", torch.device("cpu"), tmp_path / "real", {"w.pt": digest})
        descriptor = json.loads((tmp_path / "real/model/clip.json").read_text())
        assert descriptor["weights_sha256"] == {"w.pt": digest} and descriptor["open_clip"]["model"] == name

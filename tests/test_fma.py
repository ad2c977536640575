"""FMA-WSSS: MCL (eq. 12) and CAL (eq. 13–15) on hand-computed values, the prompt learner's layouts (eq. 5–7) on
both text-tower kinds, GradCAM's double backward, and the two-phase request gating."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.clip_es.gradcam import raw_gradcam
from pipeline.cams.methods.fma.losses import cam_activation_loss, multi_label_contrastive
from pipeline.cams.methods.fma.model import Fma, FmaClassification
from pipeline.cams.methods.fma.params import FmaClassificationParams, FmaParams
from pipeline.cams.methods.fma.prompts import PLACEHOLDER, PromptLearner
from pipeline.clip.models import load_clip
from pipeline.clip.vision import vision_pass
from tests.clip_fixtures import write_tiny_clip

CLASSES = ("cat", "dog", "boat")


def test_mcl_is_eq_12_over_images_with_a_positive_and_a_negative() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])  # rows 3 and 4 do not count

    def term(positive: float, negatives: list[float]) -> float:
        return -math.log(math.exp(positive) / (math.exp(positive) + sum(math.exp(n) for n in negatives)))

    expected = (term(2.0, [1.0, 0.0]) + term(1.0, [0.5]) + term(3.0, [0.5])) / 3
    loss = multi_label_contrastive(logits, targets)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[2:] == 0)


def test_mcl_without_a_counting_image_is_zero_and_differentiable() -> None:
    logits = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = multi_label_contrastive(logits, torch.tensor([[1.0, 1.0]]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(logits.grad == 0)


def test_cal_is_eq_13_14_divided_by_the_positive_classes_labelled_pixels() -> None:
    """Eq. 15's |P|·HW: FMA-WSSS's CAMIntensityLoss (reduce='all') divides by Σ over positive classes of the
    labelled pixels."""
    # class 0 (label 1): seeds cover (0,0), (0,1); (1,0) is background, (1,1) ignored
    cams = torch.tensor([[[0.5, 0.2], [-0.1, 0.3]], [[0.4, -0.2], [0.6, 0.9]]], requires_grad=True)
    seeds = torch.tensor([[[1, 1], [0, 255]]])
    loss = cam_activation_loss([cams], [[0, 2]], seeds)
    # class 0: |0.5 − 0.5| + |0.5 − 0.2| on its seeds, ReLU(−0.1) on background = 0.3
    # class 2 (label 3) has no seed pixel: ReLU over the three labelled pixels = 0.4 + 0 + 0.6
    # divisor: 2 positive classes × 3 labelled pixels
    assert float(loss.detach()) == pytest.approx((0.3 + 1.0) / 6)
    loss.backward()
    expected = torch.tensor([[[0.0, -1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]]) / 6  # the max is detached
    torch.testing.assert_close(cams.grad, expected)


def test_cal_pools_the_divisor_over_the_batch() -> None:
    """Two images: (a) one class on 2 labelled pixels, (b) two classes on 4: one sum over (2·1 + 4·2) pixels,
    not the mean of per-image ratios."""
    first = torch.tensor([[[0.2, 0.6]]])  # seeds [1, 0]: |0.2 − 0.2| + ReLU(0.6) = 0.6
    second = torch.tensor([[[0.5, 0.5], [0.1, 0.1]], [[0.3, 0.3], [0.3, 0.3]]])
    seeds = torch.tensor([[[1, 0], [255, 255]], [[2, 2], [0, 3]]])
    # image b, class 1 (label 2): seeds at (0,0), (0,1): 0; background (1,0), class 3 at (1,1): 0.1 + 0.1 = 0.2
    # image b, class 2 (label 3): seed at (1,1): 0; others: 0.3 × 3 = 0.9
    loss = cam_activation_loss([first, second], [[0], [1, 2]], seeds)  # (a) upsampled: both rows 0.2, 0.6
    assert float(loss) == pytest.approx((0.6 + 0.2 + 0.9) / (2 * 1 + 4 * 2))


def test_cal_peak_is_clamped_at_zero_and_an_all_ignored_label_gives_zero_not_nan() -> None:
    cams = torch.tensor([[[-0.5, -0.2]]], requires_grad=True)
    loss = cam_activation_loss([cams, cams * 2], [[0], [0]], torch.tensor([[[1, 1]], [[255, 255]]]))
    assert float(loss.detach()) == pytest.approx((0.5 + 0.2) / 2)  # image 1: |0 − cam| on 2 pixels; image 2: none
    loss.backward()
    assert torch.isfinite(cams.grad).all()
    empty = cam_activation_loss([cams.detach()], [[0]], torch.tensor([[[255, 255]]]))
    assert float(empty) == 0.0


def test_cal_on_the_maps_own_range_divides_each_map_by_its_max_abs_and_ignores_scale() -> None:
    cams = torch.tensor([[[0.5, 0.2], [-1.0, 0.3]]], requires_grad=True)  # max |M| = 1.0 (the −1.0)
    seeds = torch.tensor([[[1, 1], [0, 0]]])
    loss = cam_activation_loss([cams], [[0]], seeds, scale="max")
    # maps / 1.0: |0.5 − 0.5| + |0.5 − 0.2| on the seeds, ReLU(−1.0) + ReLU(0.3) on background, over 4 pixels
    assert float(loss.detach()) == pytest.approx((0.3 + 0.3) / 4)
    for factor in (1e-6, 3.0):  # the raw loss scales with the maps, this one does not
        scaled = [cams.detach() * factor]
        assert float(cam_activation_loss(scaled, [[0]], seeds, scale="max")) == pytest.approx(0.6 / 4)
        assert float(cam_activation_loss(scaled, [[0]], seeds)) == pytest.approx(factor * 0.6 / 4)
    loss.backward()
    # ∂/∂N of the four terms (N = M / s, the peak detached): 0, −1, 0, +1; then ∂N/∂M = 1/s − M ∂s/∂M / s², with
    # s = |M_10| in the graph (∂s/∂M_10 = −1): M_10 also gets Σ terms·M / 4 = (−0.2 + 0.3) / 4.
    torch.testing.assert_close(cams.grad, torch.tensor([[[0.0, -0.25], [0.025, 0.25]]]))


def test_raw_gradcam_is_differentiable_in_its_weights() -> None:
    features = torch.tensor([[[[1.0, 3.0]], [[2.0, -2.0]]]], requires_grad=True)  # (1, K=2, 1, 2)
    text = torch.tensor([0.5, -1.0], requires_grad=True)
    score = (text * features.mean(dim=(-2, -1))[0]).sum()  # ∂score/∂F_k = text_k / 2 at every pixel
    cam = raw_gradcam(score, features, create_graph=True)[0, 0]
    torch.testing.assert_close(cam, torch.tensor([0.25 * 1 - 0.5 * 2, 0.25 * 3 + 0.5 * 2]))
    cam.sum().backward()
    torch.testing.assert_close(text.grad, torch.tensor([2.0, 0.0]))  # Σ_pixels F_k / 2


@pytest.mark.parametrize("tower", ["native", "minilm"])
def test_prompt_learner_places_context_and_class_words_where_each_phase_wants_them(tower: str, tmp_path: Path) -> None:
    clip = load_clip(write_tiny_clip(tmp_path, tower))
    unified = PromptLearner(clip, ["cat", "grass"], 4, class_first=False, init_std=0.02)
    specific = PromptLearner(clip, ["sea lion", ""], 4, class_first=True, init_std=0.02)
    assert unified.texts == ["X X X X cat.", "X X X X grass."]
    assert specific.texts == ["sea lion X X X X.", "X X X X."]
    assert unified.positions.tolist() == [[1, 2, 3, 4]] * 2  # right after the start token, words last
    assert specific.positions.tolist() == [[3, 4, 5, 6], [1, 2, 3, 4]]  # after the two words; alone
    assert unified.context.shape[0] == 4 and specific.context.shape[:2] == (2, 4)
    embedded = specific.prompt_embeddings()
    torch.testing.assert_close(embedded[0, 3:7], specific.context[0])
    torch.testing.assert_close(embedded[1, 1:5], specific.context[1])
    torch.testing.assert_close(embedded[0, :3], specific.embedded[0, :3])  # start token and the class words
    shared = unified.prompt_embeddings()
    torch.testing.assert_close(shared[0, 1:5], shared[1, 1:5])

    with torch.no_grad():  # context = the placeholder's own embedding: the tower's plain text encoding
        placeholder = unified.embedded[0, 1]
        unified.context.copy_(placeholder.expand_as(unified.context))
        specific.context.copy_(placeholder.expand_as(specific.context))
        torch.testing.assert_close(unified(), clip.encode_text(unified.texts))
        torch.testing.assert_close(specific(), clip.encode_text(specific.texts))
    specific()[0].sum().backward()
    assert specific.context.grad[0].abs().sum() > 0 and torch.all(specific.context.grad[1] == 0)


def test_class_words_with_the_placeholder_word_are_refused(tmp_path: Path) -> None:
    clip = load_clip(write_tiny_clip(tmp_path))
    with pytest.raises(ValueError, match="context placeholders"):
        PromptLearner(clip, [f"{PLACEHOLDER} ray"], 4, class_first=True, init_std=0.02)


def test_one_backward_over_a_batch_gives_each_image_its_own_gradcam(tmp_path: Path) -> None:
    clip = load_clip(write_tiny_clip(tmp_path))
    images = torch.randn(2, 3, 32, 32)
    text = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)

    def scores(passed):
        embedding = torch.nn.functional.normalize(passed.image_embedding, dim=-1)
        return (embedding @ text.T * 10).softmax(dim=-1)

    batched = vision_pass(clip.visual, images)
    maps = raw_gradcam(scores(batched)[[0, 1], [2, 0]].sum(), batched.features)
    for b, c in ((0, 2), (1, 0)):
        alone = vision_pass(clip.visual, images[b : b + 1])
        torch.testing.assert_close(maps[b], raw_gradcam(scores(alone)[0, c], alone.features)[0], atol=1e-5, rtol=1e-4)


def test_segmentation_phase_trains_its_prompts_through_gradcam_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    descriptor = write_tiny_clip(tmp_path / "clip", "minilm")
    context = BuildContext(class_names=CLASSES, inputs={"clip": descriptor})
    model = Fma.build(FmaParams(prompts={"context_tokens": 4}, cal_scale="raw"), context).train()
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["prompts.context"]
    # the frozen CLIP stays in eval mode: no dropout in MiniLM, no BatchNorm statistics of the stem updated
    assert model.prompts.training and not any(m.training for m in model.clip_model.modules())
    stem_statistics = [b.clone() for b in model.clip_model.visual.conv1.buffers()]
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    seeds = torch.randint(0, 4, (2, 32, 32))
    loss = model.training_step(images, targets, seeds)["cal"]
    loss.backward()
    grad = model.prompts.context.grad  # (3 classes + 14 background prompts, 4, width)
    assert grad[[0, 1, 2]].abs().sum() > 0 and grad[3:].abs().sum() > 0
    assert set(model.saved_state()) == {"prompts.context"}
    assert all(torch.equal(a, b) for a, b in zip(stem_statistics, model.clip_model.visual.conv1.buffers(), strict=True))
    # cal_scale: max reads the same maps on their own range: the loss no longer follows their (tiny) scale
    model.params = model.params.model_copy(update={"cal_scale": "max"})
    on_range = model.training_step(images, targets, seeds)["cal"]
    assert torch.isfinite(on_range) and float(on_range.detach()) > 10 * float(loss.detach())


def test_segmentation_phase_positives_are_the_classes_in_the_cropped_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """FMA-WSSS's ol_cls_lb: a labelled class the crop cut out of the seeds is no positive; 255 and 0 are none."""
    from pipeline.cams.methods.fma import model as fma_model

    torch.manual_seed(0)
    descriptor = write_tiny_clip(tmp_path / "clip")
    context = BuildContext(class_names=CLASSES, inputs={"clip": descriptor})
    model = Fma.build(FmaParams(prompts={"context_tokens": 2}), context).train()
    seen = []
    monkeypatch.setattr(fma_model, "cam_activation_loss", lambda cams, classes, seeds, scale: seen.append(classes))
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 1]])  # image labels
    seeds = torch.zeros(2, 32, 32, dtype=torch.long)
    seeds[0, :4, :4] = 3  # image 0's crop kept class 2 only (class 0 was cropped out)
    seeds[1, 8:, 8:] = 255  # image 1: only background and ignored pixels in the crop
    model.training_step(torch.randn(2, 3, 32, 32), targets, seeds)
    assert seen == [[[2], []]]


def test_classification_phase_prompts_share_one_context_and_name_the_background(tmp_path: Path) -> None:
    descriptor = write_tiny_clip(tmp_path / "clip")
    params = FmaClassificationParams(prompts={"context_tokens": 2}, background=("grass", "sky"))
    model = FmaClassification.build(params, BuildContext(class_names=CLASSES, inputs={"clip": descriptor}))
    assert model.prompts.texts == ["X X cat.", "X X dog.", "X X boat.", "X X grass.", "X X sky."]
    model.train()
    loss = model.training_step(torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 1]]))["mcl"]
    loss.backward()
    assert model.prompts.context.grad.abs().sum() > 0
    model.eval()
    foreground, background = model.text()
    assert foreground.shape[0] == 3 and background.shape[0] == 2

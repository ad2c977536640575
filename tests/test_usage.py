"""USAGE's equations on hand-computed tensors (eq. 5, 7, 8, 9), the self-adaptive gap and the EMA teacher."""

import math

import pytest
import torch

from pipeline.cams.methods.usage.model import (
    activation_distribution,
    adjusted_rate,
    classification_score,
    generation_loss,
    regularisation_loss,
    tempered_scores,
)
from pipeline.cams.methods.usage.params import UsageParams
from tests.test_cam_contract import tiny_method

# Two classes on a 1 × 2 map: class 0 activates 1 at the left location, class 1 activates 2 at the right one.
ACTIVATIONS = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
E = math.e


def test_eq7_softmax_over_classes_and_a_constant_background() -> None:
    alpha = activation_distribution(ACTIVATIONS, background=0.0)
    assert alpha.shape == (1, 3, 1, 2)
    left = [E / (E + 2), 1 / (E + 2), 1 / (E + 2)]  # logits (1, 0 | bg 0)
    right = [1 / (2 + E**2), E**2 / (2 + E**2), 1 / (2 + E**2)]  # logits (0, 2 | bg 0)
    assert alpha[0, :, 0, 0].tolist() == pytest.approx(left)
    assert alpha[0, :, 0, 1].tolist() == pytest.approx(right)
    raised = activation_distribution(ACTIVATIONS, background=5.0)  # a higher background takes the locations
    assert float(raised[0, 2].min()) > float(alpha[0, 2].max())


def test_eq8_weights_by_alpha_to_the_one_over_tau1() -> None:
    alpha = activation_distribution(ACTIVATIONS, 0.0)[0, :2, 0]  # (class, location)
    for tau1 in (1.0, 0.5):
        weights = alpha ** (1 / tau1)
        expected = (weights * ACTIVATIONS[0, :, 0]).sum(1) / weights.sum(1)
        assert tempered_scores(ACTIVATIONS, 0.0, tau1)[0].tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    # τ1 → ∞ flattens the weights: GAP (eq. 3), the mean activation 0.5 and 1.0.
    assert tempered_scores(ACTIVATIONS, 0.0, 1e6)[0].tolist() == pytest.approx([0.5, 1.0], rel=1e-4)
    # τ1 → 0 keeps the location where α^c is largest: the class's own peak.
    assert tempered_scores(ACTIVATIONS, 0.0, 1e-3)[0].tolist() == pytest.approx([1.0, 2.0], rel=1e-4)


def test_eq5_generation_loss_is_the_mean_binary_cross_entropy_of_the_tempered_scores() -> None:
    scores, targets = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    sigmoid = 1 / (1 + math.exp(-2.0))
    expected = -(math.log(0.5) + math.log(1 - sigmoid)) / 2
    assert generation_loss(scores, targets).item() == pytest.approx(expected, rel=1e-6)


def test_eq9_cross_entropy_of_tempered_teacher_and_student_distributions() -> None:
    student = torch.tensor([[[[1.0]], [[0.0]]]])  # one location: logits (1, 0 | bg 0)
    teacher = torch.zeros(1, 2, 1, 1)  # uniform over the three channels at any temperature
    for tau2 in (1.0, 0.5):
        z = [1 / tau2, 0.0, 0.0]
        log_p = [v - math.log(sum(math.exp(u) for u in z)) for v in z]
        expected = -(tau2**2) * sum(lp / 3 for lp in log_p)
        assert regularisation_loss(student, teacher, 0.0, tau2).item() == pytest.approx(expected, rel=1e-6)
    # Averaged over locations (1/N) and the batch: two copies of the location give the same value.
    doubled = regularisation_loss(student.repeat(2, 1, 1, 2), teacher.repeat(2, 1, 1, 2), 0.0, 0.5)
    assert doubled.item() == pytest.approx(regularisation_loss(student, teacher, 0.0, 0.5).item(), rel=1e-6)
    # Only the student receives gradients; a student equal to the teacher sits at the minimum.
    student = student.clone().requires_grad_()
    regularisation_loss(student, student.detach(), 0.0, 0.1).backward()
    assert student.grad.abs().max() < 1e-6


def test_self_adaptive_gap_rises_with_the_learning_status() -> None:
    assert adjusted_rate(0.3, (0.05, 0.15)) == pytest.approx(0.05)  # below chance: the weakest gap
    assert adjusted_rate(0.5, (0.05, 0.15)) == pytest.approx(0.05)
    assert adjusted_rate(0.75, (0.05, 0.15)) == pytest.approx(0.10)
    assert adjusted_rate(1.0, (0.0, 0.01)) == pytest.approx(0.01)
    scores, targets = torch.tensor([[0.0, 2.0], [5.0, 5.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert classification_score(scores, targets).item() == pytest.approx(0.5)  # the image without labels skipped


def test_vit_drop_path_follows_timms_per_block_rule() -> None:
    """timm: block i of L drops at rate · i / (L − 1), both its sub-layers alike (not 2L linearly spaced rates)."""
    model = tiny_method("usage", "vit")
    backbone = model.student.backbone
    backbone.set_adjustment(0.3, 0.0)
    depth = len(backbone.vit.blocks)
    expected = [0.3 * i / (depth - 1) for i in range(depth)]
    assert [(b.drop_path1.p, b.drop_path2.p) for b in backbone.vit.blocks] == [
        (pytest.approx(r), pytest.approx(r)) for r in expected
    ]


def test_training_step_sets_the_gap_updates_the_status_and_the_ema_teacher() -> None:
    model = tiny_method("usage", "resnet").train()
    paths = model.student.backbone.drop_paths()
    model.learning_status.fill_(1.0)
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    losses = model.training_step(images, targets)
    assert set(losses) == {"generation", "regularisation"}
    assert paths[-1].p == pytest.approx(0.15) and paths[0].p == 0.0
    assert [m.p for m in model.student.backbone.dropouts()] == [pytest.approx(0.01)]
    assert model.teacher.backbone.drop_paths()[-1].p == pytest.approx(0.05)
    assert 0.99 < float(model.learning_status) < 1.0  # EMA towards this batch's (lower) score
    with torch.no_grad():
        for p in model.student.parameters():
            p.fill_(1.0)
        for p in model.teacher.parameters():
            p.fill_(0.0)
    model.after_optimizer_step()
    assert {round(float(p.mean()), 6) for p in model.teacher.parameters()} == {0.01}


def test_tau1_follows_the_deterministic_principle() -> None:
    assert UsageParams(backbone="resnet").temperature() == 50.0
    assert UsageParams(backbone="vit").temperature() == 1.0
    assert UsageParams(backbone="vit", tau1=3.0).temperature() == 3.0
    with pytest.raises(ValueError, match="student_drop_path must be a rising pair"):
        UsageParams(student_drop_path=(0.2, 0.1))

"""USAGE: a Unified paradigm for Seed Area GEneration (Peng et al., ICCV 2023), on a ResNet or a ViT.

The objective (eq. 5) is a generation loss on temperature-controlled image scores plus λ times a regularisation
loss between a student and an EMA teacher that see the same image through differently adjusted networks:

- eq. 7, :func:`activation_distribution`: α_ij^c = softmax over c ∈ C ∪ {bg} of the activations W_cᵀ A_ij, the
  background a constant channel;
- eq. 8, :func:`tempered_scores`: s̃^c = Σ_ij (α_ij^c)^{1/τ1} W_cᵀ A_ij / Σ_ij (α_ij^c)^{1/τ1} (τ1 = 50 for a
  CNN smooths towards GAP, τ1 = 1 for a transformer sharpens);
- eq. 5, :func:`generation_loss`: 1/|C| Σ_c CE(y^c, σ(s̃^c)), plus λ · L_REG;
- eq. 9, :func:`regularisation_loss`: −τ2² · 1/N Σ_ij (α̃_ij)^{1/τ2} · log (α_ij)^{1/τ2} between the teacher's α̃
  and the student's α;
- the self-adaptive network adjustment, :func:`adjusted_rate`: the student's drop-path and dropout rates rise
  from their low to their high value as the learning status (an EMA of the classification score) rises.

The paper has no public code; where it is silent we chose, and say why:

- Background channel (eq. 7): a constant activation of 0 (``background``), the value a class with no evidence
  has; α then gives a location to background unless some class activates above 0 there.
- (α)^{1/τ} in eq. 8 and 9 is read as the distribution raised to 1/τ and renormalised — over locations in eq. 8
  (the equation's own denominator), over the |C| + 1 channels in eq. 9 (a knowledge-distillation cross-entropy,
  whose τ² factor eq. 9 carries); computed as softmax(log α / τ) for stability. Eq. 9 sums over the channels,
  averages over the N = W × H locations and over the batch; gradients reach the student only.
- Learning status: the EMA (``status_momentum`` 0.99, per step, from 0.5) of the student's mean σ(s̃^c) over
  each image's present classes — its classification score, as in FreeMatch, which the paper cites. The gap
  grows linearly with the status from chance (0.5) to certainty (1): rate = low + (high − low) ·
  clip(2 · status − 1, 0, 1), for γ_s (0.05 → 0.15) and δ_s (0 → 0.01); the teacher keeps γ_t = 0.05, δ = 0.
- The teacher (EMA 0.99 of the student's weights, BatchNorm statistics copied) runs in training mode, so its
  weak adjustment is active, without gradients. Its weights give the CAMs and image scores at inference: an
  EMA model is the steadier of the two.
- CAMs are the activations W_cᵀ A_ij (eq. 2 of the CAM; the seed area of eq. 1), whose shape the generation
  loss has controlled; extraction applies ReLU and per-class max normalisation as for every method.
- Drop-path on a ResNet drops each block's residual branch; dropout there acts on the feature map A (a ViT uses
  its own dropout layers); see pipeline/backbones.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext, CamModel
from pipeline.cams.methods.plain_cam.model import multilabel_soft_margin_loss
from pipeline.cams.methods.usage.params import UsageParams
from pipeline.cams.network import ActivationNetwork
from pipeline.cams.registry import CAM_METHODS
from pipeline.distributed import process_mean


def with_background(activations: torch.Tensor, background: float) -> torch.Tensor:
    """(B, K, h, w) activations → (B, K + 1, h, w), the constant background channel last."""
    constant = torch.full_like(activations[:, :1], background)
    return torch.cat([activations, constant], dim=1)


def activation_distribution(activations: torch.Tensor, background: float) -> torch.Tensor:
    """Eq. 7: α (B, K + 1, h, w), a softmax over the classes and the background at every location."""
    return F.softmax(with_background(activations, background), dim=1)


def tempered_scores(activations: torch.Tensor, background: float, tau1: float) -> torch.Tensor:
    """Eq. 8: s̃ (B, K), each class's activations averaged with weights (α^c)^{1/τ1} normalised over locations."""
    log_alpha = F.log_softmax(with_background(activations, background), dim=1)[:, :-1]
    weights = F.softmax(log_alpha.flatten(2) / tau1, dim=2)
    return (weights * activations.flatten(2)).sum(dim=2)


def generation_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 5, first term: 1/|C| Σ_c CE(y^c, σ(s̃^c)), batch-averaged."""
    return multilabel_soft_margin_loss(scores, targets)


def regularisation_loss(
    student: torch.Tensor, teacher: torch.Tensor, background: float, tau2: float
) -> torch.Tensor:  # fmt: skip
    """Eq. 9: −τ2² · 1/N Σ_ij Σ_c α̃^{(τ2)} log α^{(τ2)}, α^{(τ)} = softmax(log α / τ) over the K + 1 channels."""
    target = F.softmax(with_background(teacher, background) / tau2, dim=1)
    log_student = F.log_softmax(with_background(student, background) / tau2, dim=1)
    return -(tau2**2) * (target * log_student).sum(dim=1).mean()


def adjusted_rate(status: float, rates: tuple[float, float]) -> float:
    """The self-adaptive adjustment: ``low`` at chance (status 0.5), rising linearly to ``high`` at status 1."""
    low, high = rates
    return low + (high - low) * min(1.0, max(0.0, 2.0 * status - 1.0))


def classification_score(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean σ(s̃^c) over each image's present classes, averaged over the batch (images with none skipped)."""
    present = targets.sum(dim=1)
    per_image = (torch.sigmoid(scores) * targets).sum(dim=1) / present.clamp(min=1)
    return per_image[present > 0].mean() if bool((present > 0).any()) else scores.new_tensor(0.5)


@CAM_METHODS.register("usage")
class Usage(CamModel):
    """Student and EMA teacher :class:`ActivationNetwork`; the teacher gives the CAMs."""

    params_model = UsageParams
    backbone_prefix = "student.backbone."

    def __init__(self, params: UsageParams, num_classes: int, pretrained: bool) -> None:
        super().__init__()
        self.params = params
        self.tau1 = params.temperature()
        self.student = ActivationNetwork(params, num_classes, pretrained)
        self.teacher = ActivationNetwork(params, num_classes, pretrained=False)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.teacher.backbone.set_adjustment(params.teacher_drop_path, 0.0)
        self.register_buffer("learning_status", torch.tensor(0.5))
        backbone = self.student.backbone
        self.size_multiple, self.input_mean, self.input_std = backbone.size_multiple, backbone.mean, backbone.std

    @classmethod
    def build(cls, params: UsageParams, context: BuildContext) -> Usage:
        return cls(params, len(context.class_names), context.pretrained)

    def student_rates(self) -> tuple[float, float]:
        """(drop-path γ_s, dropout δ_s) at the current learning status."""
        status = float(self.learning_status)
        return adjusted_rate(status, self.params.student_drop_path), adjusted_rate(status, self.params.student_dropout)

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        self.student.backbone.set_adjustment(*self.student_rates())
        student = self.student.activations(images)
        with torch.no_grad():
            teacher = self.teacher.activations(images)
        scores = tempered_scores(student, self.params.background, self.tau1)
        momentum = self.params.status_momentum
        score = classification_score(scores.detach(), targets)
        score = process_mean(score, int((targets.sum(dim=1) > 0).sum()), 0.5)  # the whole batch's, under DDP
        self.learning_status.mul_(momentum).add_((1 - momentum) * score)
        regularisation = regularisation_loss(student, teacher, self.params.background, self.params.tau2)
        generation = generation_loss(scores, targets)
        return {"generation": generation, "regularisation": self.params.reg_weight * regularisation}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Teacher ← EMA of the student (weights); BatchNorm statistics copied."""
        for teacher, student in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
            teacher.mul_(self.params.ema).add_(student, alpha=1 - self.params.ema)
        for teacher, student in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            teacher.copy_(student)

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's eq. 8 scores."""
        return tempered_scores(self.teacher.activations(images), self.params.background, self.tau1)

    @torch.no_grad()
    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """The teacher's activations W_cᵀ A_ij of the listed classes."""
        return self.teacher.activations(images)[:, classes]

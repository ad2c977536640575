"""Params of FMA-WSSS's two phases, torch-free: ``fma_cls`` (classification prompts) and ``fma`` (segmentation
prompts trained on ``fma_cls``'s coarse seeds); the CLIP itself is the ``clip`` section's."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from pipeline.cams.inputs import CamMethodParams, CoarseSeedParams
from pipeline.cams.methods.clip_es.params import STAND_IN_BACKGROUND, CaaParams
from pipeline.cams.network_params import OptimizerTrainingParams
from pipeline.cams.params import CAM_PARAMS
from pipeline.schema import Strict

CalScale = Literal["raw", "max"]  # the maps CAL reads: raw (eq. 13–15) or each on its own range


class PromptParams(Strict):
    """N learned context tokens per prompt (16 in FMA-WSSS), initialised from N(0, init_std²)."""

    context_tokens: int = Field(16, ge=1)
    init_std: float = Field(0.015, gt=0)


class PromptTrainingParams(OptimizerTrainingParams):
    """FMA-WSSS trains its prompts with SGD (momentum 0.9, weight decay 5e-4, lr 1e-3, batch 16, after CoOp):
    the warm-up steps run at the constant rate ``warmup_factor`` × lr (its 500 iterations at 1e-5), then cosine
    to 0. ``optimizer: adamw`` is the pipeline's other choice."""

    warmup_factor: float = Field(0.01, gt=0, le=1)


class PromptMethodParams(CamMethodParams):
    """What both phases share: the class words (as CLIP-ES's ``class_words``; others use their natural name),
    the background words (the classification phase's background prompts; the segmentation phase learns as
    many nameless ones), the prompts' shape, CAA at inference and the training schedule."""

    extra_inputs: ClassVar[tuple[str, ...]] = ("clip",)

    class_words: dict[str, str] = {}
    background: tuple[str, ...] = STAND_IN_BACKGROUND
    prompts: PromptParams = PromptParams()
    caa: CaaParams = CaaParams()
    training: PromptTrainingParams = PromptTrainingParams(epochs=6, lr=2e-2, weight_decay=5e-4,
                                                          warmup_fraction=0.1, min_steps=450)  # fmt: skip


@CAM_PARAMS.register("fma_cls")
class FmaClassificationParams(PromptMethodParams):
    """FMA-WSSS's classification phase (``cam.method: fma_cls``): one context shared by every prompt, the
    class words last (eq. 5), the multi-label contrastive loss (eq. 12). Selected alone it is the paper's
    ablation M1 (classification prompts, then any seed method)."""


@CAM_PARAMS.register("fma")
class FmaParams(PromptMethodParams):
    """FMA-WSSS's segmentation phase (``cam.method: fma``): class-specific contexts with the class words first
    (eq. 6) and learned nameless background prompts (eq. 7), trained by the CAM activation loss (eq. 13–15)
    on the coarse seeds of ``fma_cls`` (its params are ``cam.fma_cls``; ``coarse`` says how its CAMs become
    seeds). The classification loss weight of its final config is 0, so there is none here. ``cal_scale``:
    ``max`` (each map on its own range, the demo's) or ``raw`` (the paper's eq. 13–15, the presets'; see
    :mod:`pipeline.cams.methods.fma.losses`)."""

    extra_inputs: ClassVar[tuple[str, ...]] = ("clip", "coarse_seeds")
    coarse_method: ClassVar[str | None] = "fma_cls"

    coarse: CoarseSeedParams = CoarseSeedParams()
    cal_scale: CalScale = "max"

"""Params of USAGE with the paper's defaults (§5.1); see model.py for what each one does."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.cams.network_params import BackboneChoice
from pipeline.cams.params import CAM_PARAMS


@CAM_PARAMS.register("usage")
class UsageParams(BackboneChoice):
    """``tau1`` null follows the paper's deterministic principle: 50 (smoothing) for a ResNet, 1 for a ViT."""

    reg_weight: float = Field(0.25, ge=0)  # λ of eq. 5
    tau1: float | None = Field(None, gt=0)  # eq. 8
    tau2: float = Field(0.1, gt=0)  # eq. 9
    background: float = 0.0  # the constant activation of the background channel (eq. 7)
    ema: float = Field(0.99, ge=0, lt=1)  # teacher = EMA of the student
    teacher_drop_path: float = Field(0.05, ge=0, lt=1)  # γ_t
    student_drop_path: tuple[float, float] = (0.05, 0.15)  # γ_s, from → to as the learning status rises
    student_dropout: tuple[float, float] = (0.0, 0.01)  # δ_s, from → to
    status_momentum: float = Field(0.99, ge=0, lt=1)  # EMA of the classification score (the learning status)

    @model_validator(mode="after")
    def _rates(self) -> UsageParams:
        for name in ("student_drop_path", "student_dropout"):
            low, high = getattr(self, name)
            if not 0 <= low <= high < 1:
                raise ValueError(f"{name} must be a rising pair in [0, 1): got {[low, high]}")
        return self

    def temperature(self) -> float:
        """τ1: as given, else 50 for a CNN and 1 for a transformer (§4.1)."""
        if self.tau1 is not None:
            return self.tau1
        return 50.0 if self.backbone == "resnet" else 1.0

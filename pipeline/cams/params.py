"""Params of the CAM stages, torch-free: inference settings and the method choice (methods' params beside them)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from pipeline.cams.methods.apc.params import ApcParams
from pipeline.cams.methods.clims.params import ClimsParams
from pipeline.cams.methods.clip_es.params import ClipEsParams
from pipeline.cams.methods.fma.params import FmaClassificationParams, FmaParams
from pipeline.cams.methods.pcc.params import PccParams
from pipeline.cams.methods.plain_cam.params import PlainCamParams
from pipeline.cams.methods.pole.params import PoleParams
from pipeline.cams.methods.usage.params import UsageParams
from pipeline.schema import MethodChoice, Scales, Strict


class CamInferenceParams(Strict):
    """``head``: the maps come from the method's CAM head, or from its segmentation decoder (a single-stage
    method's own labels: APC's)."""

    scales: Scales = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True
    split: Literal["train", "val"] = "train"
    head: Literal["cams", "decoder"] = "cams"


class CamParams(MethodChoice):
    kind = "CAM method"
    shared = ("inference",)
    method: str = "cam"
    inference: CamInferenceParams = CamInferenceParams()
    cam: PlainCamParams = PlainCamParams()
    usage: UsageParams = UsageParams()
    apc: ApcParams = ApcParams()
    pcc: PccParams = PccParams()
    clip_es: ClipEsParams = ClipEsParams()
    fma_cls: FmaClassificationParams = FmaClassificationParams()
    fma: FmaParams = FmaParams()
    clims: ClimsParams = ClimsParams()
    pole: PoleParams = PoleParams()

    @model_validator(mode="after")
    def _coarse_method_exists(self) -> CamParams:
        first = type(self.selected()).coarse_method
        if first is not None and not hasattr(self, first):
            raise ValueError(f"cam.{self.method}: its first phase '{first}' is not a CAM method")
        return self

    @model_validator(mode="after")
    def _decoder_exists(self) -> CamParams:
        if self.inference.head == "decoder" and not type(self.selected()).has_decoder:
            raise ValueError(f"cam.inference.head: decoder needs a method with a segmentation decoder; "
                             f"'{self.method}' has none")  # fmt: skip
        return self

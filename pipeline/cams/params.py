"""Params of the CAM stages, torch-free: inference settings and the method choice.

Each method's own params model lives beside its code (``pipeline/cams/methods/<m>/params.py``) and is found
through :data:`CAM_PARAMS`, imported the first time its section is read (``cam.selected()``, ``cam.pole``).
Loading params.yaml therefore imports no method, and a stage that reads no CAM method's section never depends
on a method's code (pipeline/code_closure.py). Every section is validated by
:meth:`CamParams.method_problems` (the ``check_params`` stage, :func:`pipeline.params.load_params`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from pipeline.registry import Registry
from pipeline.schema import MethodChoice, ParamsError, Precision, Scales, Strict, error_lines, validate_strictly

CAM_PARAMS: Registry[type[BaseModel]] = Registry("CAM method", selected_by="cam", loaders={
    "apc": "pipeline.cams.methods.apc.params", "clims": "pipeline.cams.methods.clims.params",
    "clip_es": "pipeline.cams.methods.clip_es.params", "fma_cls": "pipeline.cams.methods.fma.params",
    "fma": "pipeline.cams.methods.fma.params", "pcc": "pipeline.cams.methods.pcc.params",
    "cam": "pipeline.cams.methods.plain_cam.params", "pole": "pipeline.cams.methods.pole.params",
    "usage": "pipeline.cams.methods.usage.params",
})  # fmt: skip


class CamInferenceParams(Strict):
    """``head``: the maps come from the method's CAM head, or from its segmentation decoder (a single-stage
    method's own labels: APC's). ``fit``: how a scaled view meets the network's side multiple — ``pad``
    (zero-padded bottom/right, the maps re-normalised after upsampling and summing) or ``stretch`` (CLIP-ES's and
    FMA-WSSS's code: resized, bicubic, to sides rounded up to the multiple, each map normalised at the network's
    resolution before it is upsampled; :func:`pipeline.tta.stretched_sum`) or ``square`` (each view resized to
    ``square_size`` × ``square_size`` times its scale, as ViT-PCM, APC and PCC infer at 960 × 960). ``precision``:
    the network's forward in fp32, or autocast to bf16 / fp16 (CLIP-ES runs CLIP in fp16 on a GPU).
    ``batch_size``: images of one size and one class list seen together in one forward per view, where the
    method allows (its ``batched_inference``); the maps are each image's own, up to the rounding of batched
    kernels, so a store made at another batch size has another key."""

    scales: Scales = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True
    split: Literal["train", "val"] = "train"
    head: Literal["cams", "decoder"] = "cams"
    fit: Literal["pad", "stretch", "square"] = "pad"
    square_size: int | None = Field(None, ge=16)
    precision: Precision = "fp32"
    batch_size: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _square_has_a_size(self) -> CamInferenceParams:
        if (self.fit == "square") != (self.square_size is not None):
            raise ValueError("fit: square takes a square_size, and only it does")
        return self


class CamParams(MethodChoice):
    """``cam.method`` and ``cam.inference``; every other key is a method's section (``cam.pole``), kept as given
    and validated by that method's params model when read (absent: the model's defaults)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    kind = "CAM method"
    shared = ("inference",)
    method: str = "cam"
    inference: CamInferenceParams = CamInferenceParams()
    _sections: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    @classmethod
    def method_names(cls) -> list[str]:
        return CAM_PARAMS.names()

    @model_validator(mode="after")
    def _sections_are_methods(self) -> CamParams:
        for key, value in (self.model_extra or {}).items():
            if key not in CAM_PARAMS:
                raise ValueError(f"unknown key '{key}': neither a CAM method ({', '.join(CAM_PARAMS.names())}) "
                                 f"nor {', '.join(self.shared)}")  # fmt: skip
            if not isinstance(value, (dict, BaseModel)):
                raise ValueError(f"{key}: a CAM method's section must be a mapping")
        return self

    def section(self, name: str) -> BaseModel:
        """Method ``name``'s params, validated by its model (imported now); errors name ``cam.<name>.<key>``."""
        model = CAM_PARAMS.get(name)
        raw = (self.model_extra or {}).get(name, {})
        if isinstance(raw, BaseModel):
            raw = raw.model_dump(mode="json")
        key = f"{name} {json.dumps(raw, sort_keys=True, default=str)}"  # a model_copy shares this cache
        if key not in self._sections:
            try:
                self._sections[key] = validate_strictly(model, raw)
            except ValidationError as error:
                raise ParamsError("\n".join(["invalid parameters", *error_lines(error, f"cam.{name}")])) from None
        return self._sections[key]

    def selected(self) -> BaseModel:
        return self.section(self.method)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and name in CAM_PARAMS:
            return self.section(name)
        return super().__getattr__(name)

    def __eq__(self, other: object) -> bool:
        """Equal when the choice, the inference settings and every written section's validated params are
        (``[1, 2]`` in one file and ``[1.0, 2.0]`` in another are the same params; the cache is not compared)."""
        if not isinstance(other, CamParams):
            return NotImplemented
        names = set(self.model_extra or {}) | set(other.model_extra or {})
        same = (self.method, self.inference) == (other.method, other.inference)
        return same and all(self.section(name) == other.section(name) for name in sorted(names))

    __hash__ = None  # type: ignore[assignment]  (the sections are mappings)

    def sections(self) -> dict[str, BaseModel]:
        """Every method's params (each module imported), by name."""
        return {name: self.section(name) for name in CAM_PARAMS.names()}

    def method_problems(self) -> list[str]:
        """``  key.path: message`` for each invalid key of every method's section and each broken cross-method
        rule (every method's params module is imported)."""
        problems = []
        for name in CAM_PARAMS.names():
            try:
                self.section(name)
            except ParamsError as error:
                problems.extend(str(error).splitlines()[1:])
        if problems:
            return problems
        selected = type(self.selected())
        if selected.coarse_method is not None and selected.coarse_method not in CAM_PARAMS:
            problems.append(f"  cam.{self.method}: its first phase '{selected.coarse_method}' is not a CAM method")
        if self.inference.head == "decoder" and not selected.has_decoder:
            problems.append(f"  cam.inference.head: decoder needs a method with a segmentation decoder; "
                            f"'{self.method}' has none")  # fmt: skip
        return problems

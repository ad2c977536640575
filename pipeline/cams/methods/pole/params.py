"""Params of POLE, torch-free: CLIMS's (prompts, loss weights, schedule), the synonym selection and the adaptors."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar

from pydantic import Field, field_validator

from pipeline.cams.methods.clims.params import ClimsParams
from pipeline.cams.params import CAM_PARAMS
from pipeline.schema import Scales, Strict

FIRST_PHASE_CAMS = "artifacts/coarse/cams.zarr.zip"


class SynonymSelectionParams(Strict):
    """Eq. 6: each (train image, present class) gets the synonym whose prompt "a photo of {synonym}." is most
    similar to the image masked by the baseline's CAM. The baseline is by default the first phase — plain CAM
    (``cam.cam``), whose network POLE then retrains, as in the paper — whose CAMs are extracted on the train
    split at ``scales`` (and flips), normalised to [0, 1] per class. ``cams`` may name any other CAM store of the
    train split instead — any registered method's, e.g. a CLIP-ES run's ``artifacts/cams.zarr.zip`` kept with
    ``dvc add`` — a path inside the repository (a DVC dependency of ``select_prompts``); ``prompts.json``
    records which method made it. ``template`` is the paper's (lower-cased).

    ``candidates``: how many words each class may choose from, its ground-truth name included (the class's
    natural name first, then its ``class_words`` word, e.g. CLIMS's "player" for person, then the vocab stage's
    synonyms). The paper's best setting counts 4 with the name (presets); null keeps every synonym."""

    template: str = "a photo of {}."
    scales: Scales = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True
    cams: str = FIRST_PHASE_CAMS
    candidates: int | None = Field(None, ge=1)

    @field_validator("cams")
    @classmethod
    def _inside_the_repository(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or not value.endswith(".zarr.zip"):
            raise ValueError(f"'{value}': a CAM store (.zarr.zip) inside the repository, as a relative path")
        if path == PurePosixPath("artifacts/cams.zarr.zip"):  # extract_cams's: POLE's own CAMs, a DAG cycle
            raise ValueError(f"'{value}' is the output of extract_cams; keep a baseline's store under another path")
        return value


class AdaptorParams(Strict):
    """Eq. 7–8: v* = r ⊙ A(v) + (1 − r) ⊙ v, A two bias-free layers d → d / ``reduction`` → d with a ReLU
    between, r a learnable per-dimension ratio starting at ``ratio_init`` (POLE's code: 0.2, reduction 4)."""

    reduction: int = Field(4, ge=1)
    ratio_init: float = Field(0.2, ge=0, le=1)


@CAM_PARAMS.register("pole")
class PoleParams(ClimsParams):
    """POLE (``cam.method: pole``): CLIMS (``cam.clims``'s network and losses; POLE's settings here) where the
    class prompt of each (image, class) pair is the synonym selected for it — from ``artifacts/vocab/synonyms.json``,
    the ground-truth name included — by the ``select_prompts`` stage (eq. 6), and the object and background
    views and the prompts pass through the image and text adaptors before their cosines (eq. 7–8); the
    background suppression reads the views and prompts without adaptors (POLE's code).

    The demo keeps CLIMS's demo schedule and weights (area 0.2), so the two differ only by what the paper adds;
    at paper scale (presets) POLE's code turns the area term off (weights 10, 25, 1, 0)."""

    extra_inputs: ClassVar[tuple[str, ...]] = ("clip", "coarse_model", "synonyms", "prompt_choices")

    selection: SynonymSelectionParams = SynonymSelectionParams()
    adaptors: AdaptorParams = AdaptorParams()

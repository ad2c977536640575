"""Params of CLIP-ES, torch-free: prompts and CAA; the CLIP itself is the ``clip`` section's."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipeline.cams.inputs import CamMethodParams
from pipeline.cams.params import CAM_PARAMS
from pipeline.schema import Strict

# The synthetic caption corpus's context words (pipeline/clip/corpus.py): the stand-in's background prompts.
STAND_IN_BACKGROUND = ("branches", "carpet", "floor", "grass", "hay", "pavement", "railway", "road", "sky", "snow",
                       "wall", "water", "windowsill", "wood")  # fmt: skip


class CaaParams(Strict):
    """Class-aware attention-based affinity (eq. 4). CLIP-ES: the last 8 of 12 blocks, 3 Sinkhorn rounds,
    power 2, box threshold 0.4 (VOC; 0.7 COCO); FMA-WSSS's final VOC setting: 1 round, threshold 0.5. Off by
    default, as the demo runs: on the stand-in's 8 × 8 patch grid CAA spreads the maps over the context (SAMS
    seeds of fma_cls's CAMs on 150 train images: 0.269 with CAA, 0.344 without); the presets turn it on."""

    enabled: bool = False
    blocks: int = Field(8, ge=1)  # the last n blocks' attention (all of them when the model has fewer)
    sinkhorn_rounds: int = Field(3, ge=0)
    power: int = Field(2, ge=1)
    box_threshold: float = Field(0.4, gt=0, le=1)


@CAM_PARAMS.register("clip_es")
class ClipEsParams(CamMethodParams):
    """``template`` formats every prompt; ``class_words`` maps a dataset class to the words put in its prompt
    (CLIP-ES lists synonyms: "person with clothes,people,human"), others use their natural name;
    ``background`` lists the background prompts' words (the stand-in's: its corpus's context words)."""

    extra_inputs: ClassVar[tuple[str, ...]] = ("clip",)
    trains: ClassVar[bool] = False

    template: str = "a photo of a {}."
    class_words: dict[str, str] = {}
    background: tuple[str, ...] = STAND_IN_BACKGROUND
    caa: CaaParams = CaaParams()

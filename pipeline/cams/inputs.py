"""Extra inputs of CAM methods: pipeline outputs a method reads besides the images, declared in its params.

A method's params model (torch-free) names what it reads in ``extra_inputs`` (keys of :data:`METHOD_INPUTS`).
The ``cam_inputs`` stage depends on every such output and writes ``artifacts/cam_inputs.json`` with the digests
of the *selected* method's inputs only; ``train_classifier`` and ``extract_cams`` depend on that file. So a new
vocabulary reruns the methods that read it (PCC's clusters, POLE's synonyms) and nothing else: for plain CAM
the file's bytes stay the same and DVC stops there. Training and extraction get the paths through
:class:`~pipeline.cams.contract.BuildContext` and fold the digests into their resume keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from pipeline import layout
from pipeline.io import sha256_file
from pipeline.schema import Scales, Strict

METHOD_INPUTS: dict[str, Path] = {
    "synonyms": layout.VOCAB / "synonyms.json",  # vocab stage: class → synonyms (POLE)
    "clusters": layout.VOCAB / "clusters.json",  # vocab stage: category clusters (PCC)
    "clip": layout.CLIP_MODEL / "clip.json",  # pretrain_clip stage: the CLIP descriptor (CLIP-ES, FMA, POLE)
    "coarse_model": layout.COARSE_MODEL,  # train_coarse stage: a first phase's model (CLIMS starts from plain CAM)
    "coarse_seeds": layout.COARSE_SEEDS,  # coarse_seeds stage: a first phase's seeds (FMA's segmentation phase)
    "prompt_choices": layout.COARSE_PROMPTS,  # select_prompts stage: the synonym per image and class (POLE)
}
COARSE_INPUTS = ("coarse_model", "coarse_seeds")


class CoarseSeedParams(Strict):
    """How a two-phase method's first-phase CAMs become its coarse seeds: CAMs of the train split at
    ``scales`` (and flips), then SAMS on the cached proposals with ``t_r`` and ``alpha`` (eq. 8–10 of FMA-WSSS;
    its final config: one scale, α 0.7)."""

    scales: Scales = (1.0,)
    flip: bool = False
    t_r: float = Field(0.3, gt=0, le=1)
    alpha: float = Field(0.7, gt=0)


class CamMethodParams(Strict):
    """Base of every CAM method's params: ``extra_inputs`` names the pipeline outputs the method reads;
    ``has_decoder`` says whether the method has a segmentation decoder (``cam.inference.head: decoder``);
    :meth:`uses_clip` whether it stands on the CLIP of the ``clip`` section (it reads the input ``clip``);
    ``trains`` false for a training-free method (CLIP-ES), whose params then have no ``training`` section;
    ``coarse_method`` names the CAM method of a two-phase method's first phase, which the method reads as its
    trained model (the input ``coarse_model``: CLIMS starts from plain CAM's weights) or as its CAMs made into
    seeds as the params' ``coarse`` section says (the input ``coarse_seeds``: FMA's pixel targets from
    ``fma_cls``); :mod:`pipeline.cams.coarse`."""

    extra_inputs: ClassVar[tuple[str, ...]] = ()
    has_decoder: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    coarse_method: ClassVar[str | None] = None

    @classmethod
    def uses_clip(cls) -> bool:
        return "clip" in cls.extra_inputs

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        unknown = sorted(set(cls.extra_inputs) - set(METHOD_INPUTS))
        if unknown:
            raise TypeError(f"{cls.__name__}.extra_inputs: unknown {unknown}; known: {sorted(METHOD_INPUTS)}")
        two_phase = cls.coarse_method is not None
        if two_phase != any(name in cls.extra_inputs for name in COARSE_INPUTS):
            raise TypeError(
                f"{cls.__name__}: a coarse_method goes with a first-phase input ({', '.join(COARSE_INPUTS)})"
            )
        if ("coarse_seeds" in cls.extra_inputs) != ("coarse" in cls.model_fields):
            raise TypeError(f"{cls.__name__}: the input 'coarse_seeds' goes with a 'coarse' field (how they are made)")


def method_inputs(params: BaseModel, root: Path = Path()) -> dict[str, Path]:
    """The paths of the inputs a method's params declare, each checked to exist (the message names the file)."""
    names = getattr(type(params), "extra_inputs", ())
    paths = {name: Path(root) / METHOD_INPUTS[name] for name in names}
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: input '{name}' of the CAM method is missing (`dvc repro cam_inputs` builds it first)"
            )
    return paths


def input_digests(params: BaseModel, root: Path = Path()) -> dict[str, str]:
    """SHA-256 of each declared input, by name (what ``cam_inputs.json`` records and resume keys include)."""
    return {name: sha256_file(path) for name, path in method_inputs(params, root).items()}


def inputs_settings(params: BaseModel) -> dict[str, dict[str, str]]:
    """The ``inputs`` entry of a training or extraction key: the digests, or nothing for a method without
    inputs (so those methods keep the keys, and the run-cache entries, they had before inputs existed)."""
    digests = input_digests(params)
    return {"inputs": digests} if digests else {}

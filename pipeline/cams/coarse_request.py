"""What a two-phase CAM method's first phase needs, decided without torch (the ``coarse_request`` stage).

A method whose params name a ``coarse_method`` (FMA's segmentation phase: ``fma_cls``) is trained on that
method's coarse seeds. Three cached stages make them, each depending on one request file written here, so each
reruns only when what it reads changed: ``train_coarse`` (``training.json``: the first method, its params, its
inputs' digests, the seed), ``coarse_cams`` (``inference.json``: scales, flip, ``fit``, ``precision``) and
``coarse_seeds`` (``seeding.json``: SAMS's t_r and α); POLE's ``select_prompts`` reads ``selection.json``
(template, class words) and the first phase's CAMs instead of seeds. For every other method the files say ``none``, so
switching among them never reruns the first phase; a change to the second phase's own params never does either.
A method that reads only the first phase's model (CLIMS, from plain CAM) requests no CAMs and no seeds.
"""

from __future__ import annotations

from typing import Any

from pipeline.cams.inputs import inputs_settings
from pipeline.params import PipelineParams

REQUEST_FILES = ("training", "inference", "seeding", "selection")


def coarse_request(params: PipelineParams) -> dict[str, dict[str, Any]]:
    """The three requests by file name (see the module docstring)."""
    selected = type(params.cam.selected())
    method = selected.coarse_method
    if method is None:
        none = {"method": "none", "reason": f"cam.method '{params.cam.method}' has no first phase"}
        return dict.fromkeys(REQUEST_FILES, none)
    first = getattr(params.cam, method)
    training = {"method": method, "params": first.model_dump(mode="json"), "seed": params.seed,
                **inputs_settings(first)}  # fmt: skip
    no_seeds = {"method": "none", "reason": f"cam.method '{params.cam.method}' reads no coarse seeds"}
    no_selection = {"method": "none", "reason": f"cam.method '{params.cam.method}' selects no prompts"}
    if "prompt_choices" in selected.extra_inputs:  # POLE: the first phase's CAMs choose the prompts
        selection = params.cam.selected().selection
        return {
            "training": training,
            "inference": {"method": method, "scales": list(selection.scales), "flip": selection.flip,
                          **params.cam.inference.model_dump(include={"precision"}, exclude_defaults=True)},
            "seeding": no_seeds,
            "selection": {"method": params.cam.method, "template": selection.template,
                          "class_words": params.cam.selected().class_words, "cams": selection.cams,
                          "candidates": selection.candidates},
        }  # fmt: skip
    if "coarse_seeds" not in selected.extra_inputs:
        return {"training": training, "inference": no_seeds, "seeding": no_seeds, "selection": no_selection}
    coarse = params.cam.selected().coarse
    return {
        "training": training,
        "inference": {
            "method": method,
            "scales": list(coarse.scales),
            "flip": coarse.flip,
            **params.cam.inference.model_dump(include={"fit", "square_size", "precision"}, exclude_defaults=True),
        },
        "seeding": {"method": method, "t_r": coarse.t_r, "alpha": coarse.alpha},
        "selection": no_selection,
    }

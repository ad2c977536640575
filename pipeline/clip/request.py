"""Which CLIP the pipeline needs, decided without torch (the ``clip_request`` stage).

``artifacts/clip_request.json`` holds the ``clip`` settings when the selected CAM method uses CLIP (its params
read the input ``clip``) and ``{"source": "none"}`` otherwise. ``pretrain_clip`` depends on that file alone, so the
stand-in is pretrained only when a CLIP method is selected, once for all of them (switching between CLIP-ES
and FMA reuses it), and switching among the other methods never reruns it.
"""

from __future__ import annotations

from typing import Any

from pipeline.params import PipelineParams


def clip_request(params: PipelineParams) -> dict[str, Any]:
    """The request for the selected CAM method (see the module docstring)."""
    if not type(params.cam.selected()).uses_clip():
        return {"source": "none", "reason": f"cam.method '{params.cam.method}' does not use CLIP"}
    clip = params.clip
    if clip.source == "open_clip":
        return {"source": "open_clip", "open_clip": clip.open_clip.model_dump(mode="json")}
    look = params.data.synthetic.model_dump(mode="json", exclude={"seed", "num_train", "num_val"})
    return {"source": "pretrain_here", "pretrain_here": clip.pretrain_here.model_dump(mode="json"), "look": look,
            "seed": params.seed}  # fmt: skip

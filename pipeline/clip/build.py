"""The ``pretrain_clip`` stage's work: pretrain the stand-in, or load, check and describe a real CLIP. Only a
CLIP source imports open_clip, so the stage costs a second when no CLIP method is selected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.clip.params import DESCRIPTOR_NAME
from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.io import fingerprint, publish_directory, work_directory, write_json
from pipeline.live import empty_curves
from pipeline.trainer import write_history


def build_clip(
    request: dict[str, Any], manifest: Manifest, manifest_dir: Path, device: Any, out_dir: Path,
    weights: dict[str, str] | None = None, runtime: TrainingRuntime = PLAIN_RUNTIME,
) -> dict[str, Any]:  # fmt: skip
    """Carry out a ``clip_request`` (pipeline/clip/request.py): write ``out_dir/model`` (the descriptor
    ``clip.json`` and, for the stand-in, its weights), ``out_dir/curve.csv`` and ``out_dir/metrics.json``;
    return the metrics. Only the stand-in is trained here; a real CLIP is loaded once to check that its file
    fits (a wrong file fails here, not hours later) and described, not copied: its descriptor holds the SHA-256
    of its weights file (``weights``, from the input_files stage), its format and activation, so new weights
    change the descriptor, and every CLIP stage depending on it reruns."""
    out_dir = Path(out_dir)
    model_dir = out_dir / "model"
    key = fingerprint(Path(manifest_dir) / MANIFEST_NAME, json.dumps({**request, **runtime.key_settings()},
                                                                      sort_keys=True))  # fmt: skip
    work = work_directory(model_dir, key)
    work.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    metrics: dict[str, Any] = {"source": request["source"]}
    if request["source"] == "pretrain_here":
        from pipeline.clip.pretrain import pretrain_here

        descriptor, trained, history = pretrain_here(request, manifest, device, work, runtime, out_dir)
        metrics.update(trained, precision=runtime.precision)
    elif request["source"] == "open_clip":  # loaded and checked now, before any CAM stage spends hours on it
        from pipeline.clip.models import load_open_clip
        from pipeline.clip.params import OpenClipParams

        _, loaded = load_open_clip(OpenClipParams(**request["open_clip"]))
        descriptor = {**request, "weights_sha256": weights or {}, "loaded": loaded}
        metrics.update(loaded)
    else:
        descriptor = {**request, "weights_sha256": weights or {}}
    write_json(work / DESCRIPTOR_NAME, descriptor)
    if request["source"] != "pretrain_here":  # nothing trained here: no curves
        empty_curves(out_dir)
    write_history(out_dir / "curve.csv", history, ("epoch", "loss", "val_zero_shot_mAP", "val_zero_shot_mAP_cosine"))
    write_json(out_dir / "metrics.json", metrics)
    publish_directory(work, model_dir)
    return metrics

"""A tiny random stand-in CLIP written as the pretrain_clip stage writes it (descriptor + weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.clip.models import build_from_config, stand_in_config, stand_in_state
from pipeline.clip.params import DESCRIPTOR_NAME, STAND_IN_WEIGHTS, StandInClipParams
from pipeline.io import write_json, write_torch

# the stand-in's section of params.yaml for a tiny pretrain_clip stage
TINY_STAND_IN = {"num_images": 32, "epochs": 1, "batch_size": 16, "image_size": 48, "width": 32, "head_width": 16,
                 "embed_dim": 16, "text_tower": "native", "native_text_width": 32, "native_text_layers": 1}  # fmt: skip
TINY_CLIP = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16, "embed_dim": 16,
             "native_text_width": 32, "native_text_layers": 1, "context_length": 24}  # fmt: skip


def write_tiny_clip(directory: Path, text_tower: str = "native", seed: int = 0, stem: str = "conv") -> Path:
    """Write ``directory/clip.json`` and the weights of a randomly initialised tiny stand-in; return the descriptor."""
    torch.manual_seed(seed)
    params = StandInClipParams(text_tower=text_tower, stem=stem, **TINY_CLIP)
    config = stand_in_config(params)
    model = build_from_config(config)
    directory.mkdir(parents=True, exist_ok=True)
    write_torch(directory / STAND_IN_WEIGHTS, stand_in_state(model))
    write_json(directory / DESCRIPTOR_NAME, {"source": "pretrain_here", "config": config, "weights": STAND_IN_WEIGHTS})
    return directory / DESCRIPTOR_NAME

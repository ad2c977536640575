"""A tiny random stand-in CLIP written as the pretrain_clip stage writes it (descriptor + weights)."""

from __future__ import annotations

import warnings
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


TINY_OPEN_CLIP = "TinyCLIP-test"  # an open_clip architecture registered by :func:`register_tiny_open_clip`


def register_tiny_open_clip(directory: Path) -> str:
    """Register a tiny open_clip architecture (a config JSON, as open_clip's own) and return its name."""
    import json

    import open_clip

    config = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
              "head_width": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
              "layers": 1}}  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TINY_OPEN_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(directory)
    return TINY_OPEN_CLIP


class _Holder(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_openai_torchscript(state: dict[str, torch.Tensor], path: Path) -> None:
    """OpenAI's CLIP file format: a TorchScript archive whose state dict is ``state`` in fp16 with OpenAI's
    ``input_resolution`` / ``context_length`` / ``vocab_size`` entries (random weights, never downloaded)."""
    root = _Holder()
    entries = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
               "vocab_size": torch.tensor(49408)}  # fmt: skip
    for key, value in {**{k: v.half() for k, v in state.items()}, **entries}.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if name not in module._modules:
                module.add_module(name, _Holder())
            module = module._modules[name]
        module.register_buffer(leaf, value)
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; OpenAI's files are TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), path)

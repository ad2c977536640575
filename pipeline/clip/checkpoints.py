"""CLIP weight files in the formats researchers have, read without running pickled code and checked to fit.

- **OpenAI's** ``ViT-B-16.pt`` / ``ViT-B-32.pt`` (what CLIP-ES, FMA-WSSS and POLE load with ``clip.load``) are
  TorchScript archives: read with ``torch.jit.load``, which runs TorchScript, never Python pickle code.
- **Plain state dicts** (``.pt``, ``.pth``, ``.bin``: ``torch.save(model.state_dict())``, open_clip's training
  checkpoints ``{"state_dict": …}`` with DDP's ``module.`` prefix, Hugging Face's
  ``open_clip_pytorch_model.bin``) are read with ``torch.load(weights_only=True)``.
- **safetensors** (``open_clip_model.safetensors``) is recognised by its content (a little-endian header
  length, then a JSON header).

A Hugging Face *transformers* ``CLIPModel`` file (``vision_model.encoder…`` keys) is another layout, refused
with the name of the open_clip file of the same hub repository. OpenAI's weights are recognised by the format
or by the ``input_resolution`` / ``context_length`` / ``vocab_size`` entries OpenAI's models carry: they were
trained with QuickGELU, so :func:`quick_gelu` gives it to them whatever the tag says (open_clip's own
``load_openai_model`` does the same); other weights take the tag's activation unless params say otherwise.
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.io import one_line

OPENAI_ENTRIES = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's state dicts, not weights


@dataclass
class ClipWeights:
    """A CLIP's state dict in open_clip's key layout, the file format it came in, and whether it is OpenAI's."""

    state: dict[str, torch.Tensor]
    format: str  # openai-torchscript | state-dict | safetensors
    openai: bool


def is_safetensors(path: Path) -> bool:
    """Whether the file is a safetensors file: 8 bytes of header length, then a JSON object."""
    with Path(path).open("rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < Path(path).stat().st_size


def is_torchscript(path: Path) -> bool:
    """Whether the file is a TorchScript archive (a zip with the module's ``code/``), not a pickled state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] or name.endswith("/constants.pkl") for name in archive.namelist())


def read_clip_weights(path: Path) -> ClipWeights:
    """The weights of a CLIP file in any format above; a file of another kind fails naming it and the formats."""
    path = Path(path)
    try:
        if is_safetensors(path):
            from safetensors.torch import load_file

            state, fmt = load_file(path), "safetensors"
        elif is_torchscript(path):
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; OpenAI's files are TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                state, fmt = torch.jit.load(path, map_location="cpu").state_dict(), "openai-torchscript"
        else:
            state, fmt = torch.load(path, map_location="cpu", weights_only=True), "state-dict"
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        expected = "OpenAI's TorchScript .pt, a state dict (.pt/.pth/.bin) or .safetensors"
        raise ValueError(f"{path}: not a CLIP weights file readable without running code: expected {expected} "
                         f"({one_line(error)})") from None  # fmt: skip
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # an open_clip training checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no state dict of tensors ({type(state).__name__})")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith(("vision_model.", "text_model.")) for key in state):
        raise ValueError(f"{path}: a Hugging Face transformers CLIPModel file, not open_clip's layout; use the "
                         f"open_clip_model.safetensors or open_clip_pytorch_model.bin of the same hub repository, "
                         f"or OpenAI's .pt")  # fmt: skip
    openai = fmt == "openai-torchscript" or any(key in state for key in OPENAI_ENTRIES)
    return ClipWeights({k: v for k, v in state.items() if k not in OPENAI_ENTRIES}, fmt, openai)


def describe(state: dict[str, torch.Tensor]) -> str:
    """What a CLIP state dict holds, for messages: the vision tower's kind, patch size, width and depth."""
    conv = state.get("visual.conv1.weight")
    if conv is not None and conv.dim() == 4 and "visual.class_embedding" in state:
        blocks = {m.group(1) for k in state if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))}
        return f"a ViT with patch {conv.shape[-1]}, width {conv.shape[0]}, {len(blocks)} blocks"
    if "visual.layer1.0.conv1.weight" in state:
        return f"a ModifiedResNet of width {state['visual.layer1.0.conv1.weight'].shape[1]}"
    if "visual.trunk.patch_embed.proj.weight" in state:
        return "a timm vision tower"
    return f"no CLIP vision tower known here (keys such as {sorted(state)[:3]})"


def quick_gelu(weights: ClipWeights, model: str, tag: str | None, setting: bool | None) -> tuple[bool, str]:
    """Whether the model needs QuickGELU, and why: ``setting`` when given, QuickGELU for OpenAI's weights,
    else what the pretrained tag (or a ``-quickgelu`` architecture name) says."""
    if setting is not None:
        return setting, "clip.open_clip.quick_gelu"
    if weights.openai:
        return True, f"OpenAI's weights ({weights.format})"
    if model.endswith("-quickgelu"):
        return True, "the architecture's name"
    if tag:
        import open_clip

        if open_clip.get_pretrained_cfg(model, tag).get("quick_gelu", False):
            return True, f"the pretrained tag '{tag}'"
    return False, "open_clip's default (GELU)"


POSITION_EMBEDDINGS = ("visual.positional_embedding", "positional_embedding")  # resized to the model, as open_clip


def fit(model: torch.nn.Module, weights: ClipWeights, path: Path, name: str) -> None:
    """Load ``weights`` into ``model`` (open_clip architecture ``name``; OpenAI's fp16 weights cast to the
    model's fp32), resizing the position embeddings as open_clip does; weights that do not fit fail naming the
    file, what the architecture expects and what the file holds."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    state = {key: value.float() if value.is_floating_point() else value for key, value in weights.state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    compared = set(state) & set(expected) - set(POSITION_EMBEDDINGS)
    shapes = sorted(key for key in compared if state[key].shape != expected[key].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {shapes[0]}: {tuple(state[shapes[0]].shape)} here, "
                        f"{tuple(expected[shapes[0]].shape)} expected)")  # fmt: skip
    if problems:
        raise ValueError(f"{path}: {weights.format} weights of {describe(state)} do not fit open_clip {name} "
                         f"({describe(expected)}): {'; '.join(problems)}; check clip.open_clip.model")  # fmt: skip
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    model.load_state_dict(state)

"""Checkpoint files in the formats researchers have, each made here with random weights (never downloaded) and
read by the real loading code: CLIP (OpenAI's TorchScript, state dicts, open_clip / Hugging Face ``.bin`` and
``.safetensors``), SAM, torchvision ResNets (V1 under both its names, V2)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from pipeline.clip.build import build_clip
from pipeline.clip.models import load_open_clip
from pipeline.clip.params import OpenClipParams
from tests.clip_fixtures import register_tiny_open_clip, write_openai_torchscript
from tests.test_hostile_inputs import RunsCode


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, torch.Tensor]]:
    """The tiny architecture's name and a random state dict of it."""
    name = register_tiny_open_clip(tmp_path_factory.mktemp("configs"))
    torch.manual_seed(0)
    return name, open_clip.create_model(name).state_dict()


def activation(model: torch.nn.Module) -> type:
    return type(model.visual.transformer.resblocks[0].mlp.gelu)


def write_format(fmt: str, state: dict[str, torch.Tensor], directory: Path) -> Path:
    """``state`` saved as the named format."""
    if fmt == "openai-torchscript":
        write_openai_torchscript(state, path := directory / "ViT-B-16.pt")
    elif fmt == "openai-state-dict":  # OpenAI's weights saved with torch.save(model.state_dict())
        torch.save({**{k: v.half() for k, v in state.items()}, "input_resolution": torch.tensor(224)},
                   path := directory / "openai_state.pt")  # fmt: skip
    elif fmt == "open_clip-training-checkpoint":  # open_clip's train loop under DDP
        checkpoint = {"epoch": 32, "state_dict": {f"module.{k}": v for k, v in state.items()}}
        torch.save(checkpoint, path := directory / "epoch_32.pt")
    elif fmt == "hf-bin":
        torch.save(state, path := directory / "open_clip_pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path := directory / "open_clip_model.safetensors")
    return path


@pytest.mark.parametrize(
    ("fmt", "quick"),
    [("openai-torchscript", True), ("openai-state-dict", True), ("open_clip-training-checkpoint", False),
     ("hf-bin", False), ("safetensors", False)],
)  # fmt: skip
def test_every_clip_format_loads_and_the_activation_follows_the_weights(tiny, tmp_path: Path, fmt: str, quick: bool):
    name, state = tiny
    path = write_format(fmt, state, tmp_path)
    model, loaded = load_open_clip(OpenClipParams(model=name, pretrained=None, checkpoint=str(path)))
    assert loaded["format"] == {"openai-state-dict": "state-dict", "open_clip-training-checkpoint": "state-dict",
                                "hf-bin": "state-dict"}.get(fmt, fmt)  # fmt: skip
    assert (activation(model) is QuickGELU) == quick and loaded["activation"] == ("QuickGELU" if quick else "GELU")
    tolerance = 1e-3 if fmt.startswith("openai") else 0  # OpenAI's files are fp16
    weight = model.state_dict()["visual.conv1.weight"]
    assert torch.allclose(weight, state["visual.conv1.weight"], atol=tolerance, rtol=tolerance)
    forced, _ = load_open_clip(OpenClipParams(model=name, pretrained=None, checkpoint=str(path), quick_gelu=not quick))
    assert (activation(forced) is QuickGELU) == (not quick)


@pytest.mark.parametrize("architecture", ["ViT-B-16", "ViT-B-32"])
def test_openais_real_clip_files_load_into_open_clip(tmp_path: Path, architecture: str) -> None:
    """The files CLIP-ES, FMA-WSSS and POLE load (``clip.load("ViT-B/16")``) at their real size: TorchScript,
    fp16, OpenAI's layout, read as the architecture with QuickGELU whatever the tag says."""
    torch.manual_seed(0)
    state = open_clip.create_model(architecture).state_dict()
    write_openai_torchscript(state, path := tmp_path / f"{architecture}.pt")
    model, loaded = load_open_clip(OpenClipParams(model=architecture, pretrained=None, checkpoint=str(path)))
    assert loaded["format"] == "openai-torchscript" and activation(model) is QuickGELU
    assert torch.equal(model.state_dict()["visual.proj"], state["visual.proj"].half().float())


def test_clip_files_that_do_not_fit_fail_naming_the_file_and_both_formats(tiny, tmp_path: Path) -> None:
    name, state = tiny
    path = write_format("hf-bin", state, tmp_path)
    with pytest.raises(ValueError, match=rf"{path}: state-dict weights of a ViT with patch 8, width 32, 2 blocks do "
                                         r"not fit open_clip ViT-B-32 \(a ViT with patch 32, width 768, 12 blocks\)"):
        load_open_clip(OpenClipParams(model="ViT-B-32", pretrained=None, checkpoint=str(path)))
    transformers = {"vision_model.embeddings.patch_embedding.weight": torch.zeros(4, 3, 2, 2)}
    save_file(transformers, hf := tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors: a Hugging Face transformers CLIPModel file"):
        load_open_clip(OpenClipParams(model=name, pretrained=None, checkpoint=str(hf)))
    marker = tmp_path / "ran"
    torch.save({"visual.proj": RunsCode(marker)}, crafted := tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=r"crafted\.pt: not a CLIP weights file readable without running code"):
        load_open_clip(OpenClipParams(model=name, pretrained=None, checkpoint=str(crafted)))
    assert not marker.exists()


def test_pretrain_clip_loads_a_real_clip_before_anything_else(tiny, tmp_path: Path) -> None:
    """The stage that names CLIP fails on a wrong file at once, and records what it loaded and its digest."""
    from pipeline.data.datasets import prepare_dataset
    from pipeline.params import DataParams

    name, state = tiny
    manifest = prepare_dataset(DataParams(synthetic={"num_train": 2, "num_val": 1, "image_size": 32}), tmp_path / "d")
    good = write_format("openai-torchscript", state, tmp_path)
    request = {"source": "open_clip", "open_clip": OpenClipParams(model=name, checkpoint=str(good)).model_dump()}
    metrics = build_clip(request, manifest, tmp_path / "d", torch.device("cpu"), tmp_path / "clip", {str(good): "ab"})
    descriptor = json.loads((tmp_path / "clip/model/clip.json").read_text())
    assert descriptor["loaded"]["activation"] == "QuickGELU" and descriptor["weights_sha256"] == {str(good): "ab"}
    assert metrics["format"] == "openai-torchscript"
    wrong = {"source": "open_clip", "open_clip": OpenClipParams(model="ViT-B-32", checkpoint=str(good)).model_dump()}
    with pytest.raises(ValueError, match="do not fit open_clip ViT-B-32"):
        build_clip(wrong, manifest, tmp_path / "d", torch.device("cpu"), tmp_path / "clip2", {})
    assert not (tmp_path / "clip2/model").exists()

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


def test_a_sam_checkpoints_model_type_is_read_from_the_file(tmp_path: Path) -> None:
    """``sam_vit_b_01ec64.pth`` (SAM's format: a plain state dict) under a vit_h setting fails naming both; ``auto``
    takes the type the file holds."""
    from segment_anything import sam_model_registry

    from pipeline.proposals.sam import load_sam

    torch.manual_seed(0)
    torch.save(sam_model_registry["vit_b"]().state_dict(), path := tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(ValueError, match=r"sam_vit_b_01ec64\.pth: holds SAM vit_b weights but proposals\.sam\."
                                         r"model_type is vit_h; set it to vit_b"):
        load_sam("vit_h", path, torch.device("cpu"))
    assert load_sam("auto", path, torch.device("cpu")).image_encoder.pos_embed.shape[-1] == 768
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 4, 4, 999)}, other := tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth: not a SAM state dict"):
        load_sam("auto", other, torch.device("cpu"))


def test_torchvision_resnet50_files_v1_under_both_names_and_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """IRN's and CLIMS's users have ``resnet50-19c8e357.pth`` (torchvision < 0.13's name of the V1 weights the
    papers used); torchvision now saves the same weights as ``resnet50-0676ba61.pth``; V2 is
    ``resnet50-11ad3fa6.pth`` and only ``weights: imagenet_v2`` reads it."""
    import torchvision

    from pipeline.backbones import resnet_trunk

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    folder = tmp_path / "torch_home/hub/checkpoints"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"resnet50-0676ba61\.pth or resnet50-19c8e357\.pth"):
        resnet_trunk("resnet50", "imagenet")
    torch.manual_seed(0)
    v1 = torchvision.models.resnet50().state_dict()  # random weights in torchvision's format
    torch.save(v1, folder / "resnet50-19c8e357.pth")
    trunk, _ = resnet_trunk("resnet50", "imagenet")
    assert torch.equal(trunk[0].weight, v1["conv1.weight"])
    with pytest.raises(FileNotFoundError, match=r"ImageNet weights \(imagenet_v2\) for 'resnet50'.*resnet50-11ad3fa6"):
        resnet_trunk("resnet50", "imagenet_v2")
    v2 = {key: value + 1 if value.is_floating_point() else value for key, value in v1.items()}
    torch.save(v2, folder / "resnet50-11ad3fa6.pth")
    assert torch.equal(resnet_trunk("resnet50", "imagenet_v2")[0][0].weight, v2["conv1.weight"])
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet50-0676ba61.pth")  # the wrong network
    with pytest.raises(ValueError, match=r"resnet50-0676ba61\.pth: does not fit torchvision's resnet50"):
        resnet_trunk("resnet50", "imagenet")


def google_vit_npz(vit: torch.nn.Module, path: Path, classes: int = 21843) -> None:
    """A timm ViT's weights in Google's JAX ``.npz`` layout (``ViT-B_16.npz`` of the ImageNet-21k release, what
    ViT-PCM starts from): the inverse of timm's converter, with a 21k-class head the CAM backbone drops."""
    import numpy as np

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().numpy()

    width, heads = vit.embed_dim, vit.blocks[0].attn.num_heads
    w = {"embedding/kernel": array(vit.patch_embed.proj.weight.permute(2, 3, 1, 0)),
         "embedding/bias": array(vit.patch_embed.proj.bias), "cls": array(vit.cls_token),
         "Transformer/posembed_input/pos_embedding": array(vit.pos_embed),
         "Transformer/encoder_norm/scale": array(vit.norm.weight),
         "Transformer/encoder_norm/bias": array(vit.norm.bias),
         "head/kernel": np.zeros((width, classes), np.float32), "head/bias": np.zeros(classes, np.float32)}  # fmt: skip
    for i, block in enumerate(vit.blocks):
        b, mha = f"Transformer/encoderblock_{i}/", f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/"
        for name, weight, bias in zip(("query", "key", "value"), block.attn.qkv.weight.chunk(3),
                                      block.attn.qkv.bias.chunk(3), strict=True):  # fmt: skip
            w[f"{mha}{name}/kernel"] = array(weight.T.reshape(width, heads, -1))
            w[f"{mha}{name}/bias"] = array(bias.reshape(heads, -1))
        w[f"{mha}out/kernel"] = array(block.attn.proj.weight.reshape(width, heads, -1).permute(1, 2, 0))
        w[f"{mha}out/bias"] = array(block.attn.proj.bias)
        for norm, module in (("LayerNorm_0", block.norm1), ("LayerNorm_2", block.norm2)):
            w[f"{b}{norm}/scale"], w[f"{b}{norm}/bias"] = array(module.weight), array(module.bias)
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[f"{b}MlpBlock_3/Dense_{r}/kernel"] = array(fc.weight.T)
            w[f"{b}MlpBlock_3/Dense_{r}/bias"] = array(fc.bias)
    np.savez(path, **w)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_timm_vit_weights_as_google_npz_or_timm_safetensors(tmp_path: Path, fmt: str) -> None:
    import timm

    from pipeline.backbones import ViTFeatures
    from pipeline.cams.network_params import ViTBackboneParams

    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)  # random weights in the real architecture
    if fmt == "npz":
        google_vit_npz(source, path := tmp_path / "ViT-Ti_16.npz")
    else:
        save_file(source.state_dict(), path := tmp_path / "model.safetensors")
    params = ViTBackboneParams(model="vit_tiny_patch16_224", weights="imagenet", checkpoint=str(path), patch_size=None,
                               embed_dim=None, depth=None, num_heads=None)  # fmt: skip
    loaded = ViTFeatures(params, 224, pretrained=True).vit.state_dict()
    for key, value in source.state_dict().items():
        assert torch.allclose(loaded[key], value, atol=1e-6), key

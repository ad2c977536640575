"""What a preset run needs on a CPU: real-sized photographs in VOC's or COCO's layout, the checkpoint files the
presets read in the formats researchers have (random weights of the real architectures, written here, never
downloaded), and each preset's params with only the sizes shrunk. Used by the preset smoke test
(``tests/test_preset_smoke.py``) and ``benchmarks/gpu.py``.

:func:`write_model_files` fills one folder that stands for a researcher's machine: ``home/.cache/clip`` (OpenAI's
TorchScript CLIPs, where ``clip.load`` puts them), ``torch/hub/checkpoints`` (torchvision's ResNet-50 V1 under
the name of torchvision < 0.13 that IRN's README links), ``huggingface/hub`` (smp's ResNet-101 encoder, as
``hf_hub_download`` caches it) and ``models/`` of the repository (SAM's state dict, DeiT-S's release file,
timm's ViT-B/16-384 ``.safetensors``). :func:`model_env` points a process at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from skimage.segmentation import find_boundaries

from pipeline.data.classes import COCO_CLASSES
from pipeline.io import write_label_png
from pipeline.presets import apply_presets
from tests.clip_fixtures import write_openai_torchscript

REPO = Path(__file__).resolve().parents[1]

# (photograph, size W×H, VOC class index 1..20 of its object, COCO class name)
SAMPLES = [
    ("astronaut", (500, 375), 15, "person"), ("coffee", (500, 338), 5, "cup"), ("chelsea", (500, 375), 8, "cat"),
    ("rocket", (500, 338), 1, "airplane"), ("cat", (500, 375), 8, "cat"), ("coffee", (500, 375), 5, "cup"),
]  # fmt: skip

# (data, CAM method …, segmenter) by run name: each preset file in at least one run
RUNS = {
    "cam_resnet+irn_voc": ["data_voc", "cam_resnet", "irn_voc", "segmenter_voc"],
    **{name: ["data_voc", name, "segmenter_voc"] for name in ("cam_deit", "usage_resnet", "usage_deit",
       "apc_vitb16", "pcc_vitb16", "clip_es_voc", "fma_voc", "clims_voc", "pole_voc")},
    **{name: ["data_coco", name, "segmenter_coco"] for name in ("clip_es_coco", "fma_coco", "clims_coco",
       "pole_coco")},
}  # fmt: skip


def photographs(count: int):
    """(image, mask with one elliptic object and a 255 border, VOC class, COCO class) for ``count`` images,
    cycling through :data:`SAMPLES` (a repeat is mirrored, so no two images are the same)."""
    for index in range(count):
        name, (width, height), cls, coco_name = SAMPLES[index % len(SAMPLES)]
        image = np.array(Image.fromarray(getattr(data, name)()).resize((width, height), Image.BILINEAR))
        if (index // len(SAMPLES)) % 2:
            image = image[:, ::-1]
        yy, xx = np.mgrid[:height, :width]
        mask = np.where(((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2 < 1, 1, 0)
        mask = np.where(find_boundaries(mask, mode="inner"), 255, mask).astype(np.uint8)
        yield image, mask, cls, COCO_CLASSES.index(coco_name) + 1


def make_voc_photographs(root: Path, train: int = 4, val: int = 2) -> list[str]:
    """VOC layout: JPEGImages, SegmentationClassAug, the lists (the last ``val`` images form the val split)."""
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = []
    for index, (image, mask, cls, _) in enumerate(photographs(train + val)):
        image_id = f"2011_{index:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        write_label_png(root / "SegmentationClassAug" / f"{image_id}.png", np.where(mask == 1, cls, mask))
        ids.append(image_id)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids[:train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[train:]) + "\n")
    return ids


def make_coco_photographs(root: Path, train: int = 4, val: int = 2) -> list[str]:
    """COCO 2014's WSSS layout (``{train,val}2014``, ``SegmentationClass/…``, ``ImageSets``), COCO's indices."""
    ids = []
    for index, (image, mask, _, cls) in enumerate(photographs(train + val)):
        split = "train2014" if index < train else "val2014"
        image_id = f"COCO_{split}_{index:012d}"
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "SegmentationClass" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / split / f"{image_id}.jpg", quality=90)
        write_label_png(root / "SegmentationClass" / split / f"{image_id}.png", np.where(mask == 1, cls, mask))
        ids.append(image_id)
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/train.txt").write_text("\n".join(ids[:train]) + "\n")
    (root / "ImageSets/val.txt").write_text("\n".join(ids[train:]) + "\n")
    return ids

OPENAI_CLIPS = ("ViT-B-16", "ViT-B-32")
RESNET50_V1 = "resnet50-19c8e357.pth"
SAM_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_h": "sam_vit_h_4b8939.pth"}
DEIT_FILE = "deit_small_patch16_224-cd65a155.pth"
VIT_PCM_FILE = "vit_base_patch16_384.augreg_in21k_ft_in1k.safetensors"


def write_openai_clips(folder: Path) -> None:
    """OpenAI's ``ViT-B-16.pt`` / ``ViT-B-32.pt``: TorchScript archives of the real architectures, fp16."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    for name in OPENAI_CLIPS:
        torch.manual_seed(0)
        write_openai_torchscript(open_clip.create_model(name).state_dict(), folder / f"{name}.pt")


def write_smp_encoder(hub_cache: Path, encoder: str) -> None:
    """smp's ImageNet encoder as ``hf_hub_download`` leaves it in the cache (snapshot files and the ref)."""
    import json

    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    settings = encoders[encoder]["pretrained_settings"]["imagenet"]
    revision = settings["revision"]
    commit = revision if len(revision) == 40 else "0" * 40
    repo = hub_cache / f"models--{settings['repo_id'].replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    if revision != commit:
        (repo / "refs" / revision).write_text(commit)
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in get_encoder(encoder, weights=None).state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": encoder}))


def write_model_files(root: Path, sam: str = "vit_b") -> Path:
    """Every file a preset reads, under ``root`` (see the module docstring), SAM of type ``sam``; returns
    ``root``."""
    import timm
    from safetensors.torch import save_file
    from segment_anything import sam_model_registry
    from torchvision.models import resnet50

    write_openai_clips(root / "home" / ".cache" / "clip")
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(resnet50().state_dict(), hub / RESNET50_V1)
    write_smp_encoder(root / "huggingface" / "hub", "resnet101")
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(sam_model_registry[sam]().state_dict(), models / SAM_FILES[sam])
    torch.save({"model": timm.create_model("deit_small_patch16_224").state_dict()}, models / DEIT_FILE)
    vit = timm.create_model("vit_base_patch16_384").state_dict()
    save_file({k: v.contiguous() for k, v in vit.items()}, str(models / VIT_PCM_FILE))
    return root


def model_env(root: Path) -> dict[str, str]:
    """The environment variables that make a process find :func:`write_model_files`'s files where it looks."""
    return {"HOME": str(root / "home"), "TORCH_HOME": str(root / "torch"), "HF_HOME": str(root / "huggingface"),
            "HF_HUB_CACHE": str(root / "huggingface" / "hub"), "HF_HUB_OFFLINE": "1"}  # fmt: skip


def link_models(root: Path, project: Path) -> None:
    """Hard-link ``root/models`` into the project's ``models/`` (the presets' relative paths)."""
    (project / "models").mkdir(exist_ok=True)
    for path in (root / "models").iterdir():
        target = project / "models" / path.name
        if not target.exists():
            os.link(path, target)


def shrunk(tree: dict, batch_size: int) -> dict:
    """``tree`` with the sizes a CPU cannot take shrunk: epochs 1 (one past a frozen-backbone phase, so both
    phases run) and no step floor, batch sizes at most ``batch_size``; every switch as it was."""
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out[name] = shrunk(value, batch_size)
        elif name == "epochs":
            out[name] = 1 + int(tree.get("frozen_backbone_epochs") or 0)
        elif name == "min_steps":
            out[name] = 0
        elif name == "batch_size":
            out[name] = min(value, batch_size)
        else:
            out[name] = value
    return out


def preset_params(presets: list[str], dataset: Path, batch_size: int, sam: str = "vit_b", sam_points: int = 32) -> dict:
    """The params the ``presets`` (file stems) yield on the repository's params.yaml, shrunk (:func:`shrunk`), reading
    ``dataset``, SAM from :data:`SAM_FILES`' ``sam`` file (type read from it) with at most ``sam_points`` points
    per side, and a 12-word vocabulary."""
    params, _ = apply_presets(REPO / "params.yaml", [REPO / "presets" / f"{name}.yaml" for name in presets])
    params = shrunk(params, batch_size)
    params["data"][params["data"]["source"]]["root"] = str(dataset)
    if params["proposals"]["method"] == "sam":
        params["proposals"]["sam"].update(model_type="auto", checkpoint=f"models/{SAM_FILES[sam]}",
                                          points_per_side=min(params["proposals"]["sam"]["points_per_side"],
                                                              sam_points))  # fmt: skip
    params["vocab"]["embedding"].update(vocabulary_file="presets/smoke_vocabulary.txt", use_wordnet=False)
    params["evaluate"]["overlay_images"] = 2
    return params

"""Files read from outside the pipeline's outputs are dependencies: an edited mask, list, label file, vocabulary
file or checkpoint makes exactly the stage that reads it stale; a no-op run hashes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from pipeline.input_files import READERS, DigestCache, write_input_files
from pipeline.params import PipelineParams
from tests.conftest import REPO, dvc, edit_params
from tests.test_datasets import make_voc

VOC_IDS = ["2007_000001", "2007_000002", "2007_000003", "2007_000004"]


def voc_params(root: Path, **overrides: dict) -> PipelineParams:
    return PipelineParams.model_validate({"data": {"source": "voc", "voc": {"root": str(root)}}, **overrides})


def test_every_reading_stage_depends_on_its_digests_and_no_other_does() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    depending = {name for name, stage in stages.items() if f"artifacts/inputs/{name}.json" in stage.get("deps", [])}
    assert depending == set(READERS)
    others = [(name, dep) for name, stage in stages.items() for dep in stage.get("deps", [])
              if dep.startswith("artifacts/inputs/") and dep != f"artifacts/inputs/{name}.json"]  # fmt: skip
    assert not others


def test_a_no_op_run_hashes_nothing_and_an_edit_rehashes_only_that_file(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, VOC_IDS)
    params, cache_file, out = voc_params(root), tmp_path / "cache.json", tmp_path / "inputs"
    everything = 2 + 2 * len(VOC_IDS) + 1  # the lists, images and masks, and the embedding provider's word list
    assert write_input_files(params, out, DigestCache(cache_file)) == everything
    first = (out / "prepare_data.json").read_bytes()
    digests = json.loads(first)["files"]
    assert str(root.resolve() / "cls_labels.json") not in digests  # label_file null: labels from the masks
    assert write_input_files(params, out, DigestCache(cache_file)) == 0
    assert (out / "prepare_data.json").read_bytes() == first

    mask = root / "SegmentationClassAug" / f"{VOC_IDS[1]}.png"
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert write_input_files(params, out, DigestCache(cache_file)) == 1
    assert (out / "prepare_data.json").read_bytes() != first
    os.utime(mask)  # touched, same bytes: hashed again, same digests
    assert write_input_files(params, out, DigestCache(cache_file)) == 1
    cache_file.write_text("{not json")  # a damaged cache costs a full hash, never a wrong digest
    assert write_input_files(params, out, DigestCache(cache_file)) == everything


def test_ids_leaving_the_root_are_not_read(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, VOC_IDS)
    (root / "ImageSets/Segmentation/val.txt").write_text("../../secret\n")
    files = READERS["prepare_data"](voc_params(root), DigestCache(tmp_path / "cache.json"))
    assert all(Path(path).resolve().is_relative_to(root.resolve()) for path in files)
    assert len(files) == 2 + 3 * 2  # the lists, the 3 train ids' images and masks


def test_checkpoints_follow_the_selected_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = DigestCache(tmp_path / "cache.json")
    params = PipelineParams.model_validate({
        "proposals": {"method": "sam", "sam": {"checkpoint": "models/sam_vit_b.pth"}},
        "segmenter": {"network": "deeplabv3", "encoder": "resnet50", "weights": "imagenet"},
        "cam": {"method": "usage", "usage": {"resnet": {"arch": "resnet34", "weights": "imagenet"}}},
        "refine": {"method": "irn", "irn": {"network": {"backbone": "imagenet", "arch": "resnet101"}}},
    })  # fmt: skip
    hub = tmp_path / "torch/hub/checkpoints"
    assert READERS["sam_masks"](params, cache) == [Path("models/sam_vit_b.pth")]
    assert READERS["train_segmenter"](params, cache) == [hub / "resnet50-0676ba61.pth"]
    assert READERS["train_classifier"](params, cache) == [hub / "resnet34-b627a593.pth"]
    assert READERS["train_irn"](params, cache) == [hub / "resnet101-63fe2227.pth"]
    assert READERS["train_coarse"](params, cache) == []  # USAGE has no first phase
    default = PipelineParams()
    assert all(READERS[stage](default, cache) == [] for stage in READERS if stage != "vocab")
    assert READERS["vocab"](default, cache) == [Path("pipeline/vocab/vocabulary.txt")]


def test_a_found_checkpoint_is_looked_up_again_when_its_folder_changes(tmp_path: Path) -> None:
    cache, calls = DigestCache(tmp_path / "cache.json"), []
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")

    def find() -> Path:
        calls.append(1)
        return folder / ("b.safetensors" if (folder / "b.safetensors").exists() else "a.bin")

    assert cache.locate("model", find) == folder / "a.bin"
    assert cache.locate("model", find) == folder / "a.bin" and len(calls) == 1
    (folder / "b.safetensors").write_bytes(b"b")  # a preferred file arrives: the library would now load it
    assert cache.locate("model", find) == folder / "b.safetensors" and len(calls) == 2


BUILT = ("prepare_data", "vocab", "train_segmenter_fullsup")


def status(project: Path) -> set[str]:
    """Stages `dvc status` finds stale among BUILT and their upstream after `dvc repro input_files` (which
    looks at the outside files)."""
    dvc(project, "repro", "input_files")
    stale = json.loads(dvc(project, "status", "--json", "--with-deps", *BUILT).stdout)
    return set(stale) - {"input_files"}  # always changed: it must look


def test_an_edited_dataset_vocabulary_or_checkpoint_file_makes_its_reader_stale(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    root = tmp_path / "VOC2012"  # outside the repository, as a user's copy is
    make_voc(root, VOC_IDS, size=(48, 48))
    checkpoint = tmp_path / "torch_home/hub/checkpoints/resnet18-f37072fd.pth"  # torchvision's V1 file name
    checkpoint.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), checkpoint)  # random weights in the real format
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # the DVC subprocesses inherit it
    edit_params(project, lambda p: p.update(
        data={**p["data"], "source": "voc", "voc": {**p["data"]["voc"], "root": str(root)}},
        segmenter={**p["segmenter"], "network": "deeplabv3", "encoder": "resnet18", "weights": "imagenet"},
    ))  # fmt: skip
    dvc(project, "repro", *BUILT)
    assert status(project) == set()

    def edited(path: Path, stage: str) -> None:
        original = path.read_bytes() if path.exists() else None
        path.write_bytes((original or b"") + b"\n")
        assert status(project) == {stage}, path
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)  # back to the same bytes: nothing is stale again
        assert status(project) == set(), path

    edited(root / "SegmentationClassAug" / f"{VOC_IDS[0]}.png", "prepare_data")
    edited(root / "JPEGImages" / f"{VOC_IDS[2]}.jpg", "prepare_data")
    edited(root / "ImageSets/Segmentation/train_aug.txt", "prepare_data")
    edited(project / "presets/smoke_vocabulary.txt", "vocab")
    edited(checkpoint, "train_segmenter_fullsup")
    (root / "JPEGImages/2008_000009.jpg").write_bytes(b"not listed")  # a file no list names: nothing
    assert status(project) == set()

    # The digest reruns prepare_data, whose manifest records each image's digest: what follows reruns too.
    other = tmp_path / "other"
    make_voc(other, VOC_IDS, size=(48, 48))
    (root / "SegmentationClassAug" / f"{VOC_IDS[1]}.png").write_bytes(
        (other / "SegmentationClassAug" / f"{VOC_IDS[0]}.png").read_bytes())  # fmt: skip
    dvc(project, "repro", "prepare_data")
    assert status(project) == {"train_segmenter_fullsup"}

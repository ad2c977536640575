"""How inference runs: reduced precision (``cam.inference.precision``, ``proposals.sam.precision``,
``predict.precision``), batched CAM extraction (``cam.inference.batch_size``), and images whose sides are not
multiples of a ViT's patch."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cams.extract import CamJob, extract_cams, inference_settings, multiscale_cam
from pipeline.cams.params import CamParams
from pipeline.cams.store import CamStore
from pipeline.cams.train import evaluate_labels, save_cam_method
from pipeline.data.datasets import prepare_dataset
from pipeline.device import autocast
from pipeline.execution.params import ExecutionParams
from pipeline.params import DataParams, PipelineParams, SamProposalParams, SegmenterParams
from pipeline.proposals.sam import SamProposals
from pipeline.segmentation.predict import multiscale_probabilities
from pipeline.segmentation.training import build_segmenter
from tests.test_cam_contract import tiny_method
from tests.test_proposals import tiny_sam

CPU = torch.device("cpu")


def test_precision_is_in_the_cam_keys_only_where_it_is_not_fp32() -> None:
    """The CAM store's key of every existing fp32 run stays as it was; a bf16 store gets its own."""
    assert "precision" not in inference_settings(CamParams())
    assert inference_settings(CamParams(inference={"precision": "bf16"}))["precision"] == "bf16"


def test_coarse_cams_are_requested_in_the_cam_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cams.coarse_request import coarse_request
    from pipeline.cams.inputs import METHOD_INPUTS

    monkeypatch.chdir(tmp_path)  # the request digests the CLIP descriptor the first phase reads
    (tmp_path / METHOD_INPUTS["clip"]).parent.mkdir(parents=True)
    (tmp_path / METHOD_INPUTS["clip"]).write_text("{}")
    assert "precision" not in coarse_request(PipelineParams.model_validate({"cam": {"method": "fma"}}))["inference"]
    half = PipelineParams.model_validate({"cam": {"method": "fma", "inference": {"precision": "fp16"}}})
    assert coarse_request(half)["inference"]["precision"] == "fp16"


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
def test_bf16_cams_are_close_to_fp32(backbone: str) -> None:
    model = tiny_method("cam", backbone, classes=3)
    image = torch.rand(3, 40, 56)
    full = multiscale_cam(model, image, [0, 2], (1.0, 0.5), True)
    with autocast(CPU, "bf16"):
        half = multiscale_cam(model, image, [0, 2], (1.0, 0.5), True).float()
    assert half.shape == full.shape
    assert float((half - full).abs().max()) < 0.1  # normalised maps in [0, 1]; bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_sam_generates_proposals_in_reduced_precision(precision: str) -> None:
    image = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
    loose = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=4)
    full = SamProposals(SamProposalParams(**loose), CPU, model=tiny_sam())(image)
    half = SamProposals(SamProposalParams(**loose, precision=precision), CPU, model=tiny_sam())(image)
    assert half.shape == full.shape == (48, 40) and len(half.level) > 0
    assert half.score.dtype == full.score.dtype


def test_bf16_predictions_are_probabilities() -> None:
    model = build_segmenter(SegmenterParams(network="deeplabv3plus", encoder="resnet18"), 3).eval()
    with torch.no_grad(), autocast(CPU, "bf16"):
        probabilities = multiscale_probabilities(model, torch.rand(3, 64, 80), (1.0,), flip=True).float()
    torch.testing.assert_close(probabilities.sum(dim=0), torch.ones(64, 80), atol=0.02, rtol=0)


def test_label_quality_of_images_whose_sides_are_not_patch_multiples(tmp_path: Path) -> None:
    """A ViT takes 60 px images for the val mAP as CAM extraction takes them: zero-padded to the patch multiple
    (the CLIP-ES and FMA presets failed on VOC's 500 × 375 before)."""
    manifest = prepare_dataset(DataParams(synthetic={"num_train": 4, "num_val": 4, "image_size": 60}),
                               tmp_path / "dataset")  # fmt: skip
    model = tiny_method("cam", "vit", classes=len(manifest.classes))
    assert model.size_multiple == 8 and 60 % 8
    quality = evaluate_labels(model, manifest, "val", CPU)
    assert 0.0 <= quality["mAP"] <= 1.0


def test_batched_extraction_groups_images_of_one_size_and_class_list(tmp_path: Path) -> None:
    """``batch_size`` 4: each image's maps as extracted alone (up to batched kernels' rounding), in groups of
    images that share their size and classes; the store's key names the batch size."""
    manifest = prepare_dataset(DataParams(synthetic={"num_train": 40, "num_val": 2, "image_size": 48}),
                               tmp_path / "dataset")  # fmt: skip
    model = tiny_method("cam", "resnet", classes=len(manifest.classes))
    checkpoint = tmp_path / "model.pt"
    single = CamParams(inference={"scales": (1.0, 0.5)})
    save_cam_method(checkpoint, single, manifest.classes, model)
    batched = CamParams(inference={"scales": (1.0, 0.5), "batch_size": 4})
    stores = {}
    for name, cam in (("single", single), ("batched", batched)):
        stores[name] = tmp_path / f"{name}.zarr.zip"
        extract_cams(manifest, tmp_path / "dataset", cam, checkpoint, "cpu", stores[name], ExecutionParams())
    one, four = CamStore(stores["single"]), CamStore(stores["batched"])
    assert one.attributes["inputs_key"] != four.attributes["inputs_key"] and four.attributes["batch_size"] == 4
    for image_id in one.ids():
        maps, classes = one.read(image_id)
        batched_maps, batched_classes = four.read(image_id)
        assert classes == batched_classes
        np.testing.assert_allclose(batched_maps, maps, atol=2e-3)  # the store keeps float16

    job = CamJob("key", tmp_path / "work", tmp_path / "dataset", batched, checkpoint, "cpu")
    job.load()
    ids = [entry.id for entry in manifest.entries("train")]
    groups = job.groups(ids)
    assert sorted(image_id for group in groups for image_id in group) == sorted(ids)
    for group in groups:
        assert 1 <= len(group) <= 4 and len({tuple(job.by_id[i].labels) for i in group}) == 1
    sharing = Counter(tuple(job.by_id[i].labels) for i in ids)  # all 48 × 48
    assert len(groups) == sum(math.ceil(count / 4) for count in sharing.values()) < len(ids)

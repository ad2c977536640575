"""Proposal generation (superpixels, SAM on a tiny random model), the atom index and the zarr proposal store."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from pipeline.data.datasets import prepare_dataset
from pipeline.execution.params import ExecutionParams
from pipeline.params import DataParams, ProposalParams, SamProposalParams, SuperpixelProposalParams
from pipeline.proposals import generate_proposals
from pipeline.proposals.regions import WHOLE, Proposals, region_index
from pipeline.proposals.sam import SamProposals, load_sam, nms_scores, remove_small_regions, threshold_scores
from pipeline.proposals.store import ProposalStore, ProposalStoreWriter
from pipeline.proposals.superpixels import SuperpixelProposals, best_match_iou, homogeneity


def tiny_sam(size: int = 64, dim: int = 32) -> Sam:
    """A randomly initialised SAM small enough for CPU tests (same classes as vit_h, tiny sizes)."""
    torch.manual_seed(0)
    grid = size // 16
    return Sam(
        ImageEncoderViT(img_size=size, patch_size=16, embed_dim=dim, depth=1, num_heads=2, out_chans=dim),
        PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(size, size), mask_in_chans=4),
        MaskDecoder(transformer_dim=dim, transformer=TwoWayTransformer(depth=1, embedding_dim=dim, num_heads=2,
                    mlp_dim=64), iou_head_depth=1, iou_head_hidden_dim=16),
    ).eval()  # fmt: skip


def hand_proposals() -> Proposals:
    masks = np.zeros((3, 4, 6), dtype=bool)
    masks[0, :, :3] = True  # whole: left half
    masks[1, :2, 3:] = True  # part: top right
    masks[2, 1:3, 2:4] = True  # sub-part across both
    return Proposals.from_masks(masks, np.array([2, 1, 0], np.uint8), np.array([0.9, 0.8, 0.7], np.float32),
                     np.array([0.95, 0.9, 0.85], np.float32))  # fmt: skip


def test_region_index_is_an_exact_decomposition() -> None:
    proposals = hand_proposals()
    masks = proposals.masks()
    regions, membership = region_index(masks)
    assert np.array_equal(membership[:, regions], masks)
    # Atoms: uncovered, whole only, whole+sub, part only, part+sub, sub only.
    assert membership.shape == (3, 6)
    assert len(np.unique(membership, axis=1).T) == 6


def test_store_round_trip_is_readable_with_plain_zarr(tmp_path: Path) -> None:
    proposals = hand_proposals()
    writer = ProposalStoreWriter(tmp_path / "store", {"method": "hand"})
    writer.write("img", proposals)
    writer.finish()
    from pipeline.io import pack_zip

    pack_zip(tmp_path / "store", tmp_path / "store.zip")
    store = ProposalStore(tmp_path / "store.zip")
    back = store.read("img", (4, 6))
    assert np.array_equal(back.masks(), proposals.masks()) and np.array_equal(back.level, proposals.level)
    group = zarr.open_group(zarr.storage.ZipStore(tmp_path / "store.zip", mode="r"), mode="r")
    assert group["img/bbox"][...].tolist() == [[0, 0, 3, 4], [3, 0, 3, 2], [2, 1, 2, 2]]
    assert group["img/area"][...].tolist() == [12, 6, 4]
    plain = group["img/membership"][...][:, group["img/regions"][...]]  # the README's plain-zarr reading
    assert np.array_equal(plain, proposals.masks())
    with pytest.raises(ValueError, match="img.*4×6, expected"):
        store.read("img", (6, 4))
    with pytest.raises(FileNotFoundError, match="no proposals stored for image 'other'"):
        store.read("other")


def test_canonical_order_and_empty_masks() -> None:
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, :1, :1] = True  # small whole
    masks[2, :, :] = True  # large whole
    proposals = Proposals.from_masks(
        masks, np.array([2, 0, 2], np.uint8), np.ones(3, np.float32), np.ones(3, np.float32)
    )
    canonical = proposals.canonical()
    assert canonical.area.tolist() == [16, 1]  # the empty sub-part is dropped; larger whole first
    with pytest.raises(ValueError, match="levels must be in 0..2"):
        Proposals.from_masks(masks, np.array([3, 0, 0], np.uint8), np.ones(3, np.float32), np.ones(3, np.float32))


def test_superpixel_statistics_on_a_hand_image() -> None:
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, 2:] = 200
    image[0, 0] = 100
    labels = np.array([[0, 0, 1, 1]] * 4)
    score = homogeneity(image, labels, 2)
    assert score[1] == pytest.approx(1.0)  # flat region
    assert 0.0 < score[0] < 1.0
    other = np.array([[0, 0, 0, 1]] * 4)
    # region 0 (8 px) ⊂ other region 0 (12 px): IoU 8/12; region 1 (8 px) best matches other 1 (4 px): 4/8.
    assert best_match_iou(labels, 2, other).tolist() == pytest.approx([8 / 12, 4 / 8])


def test_superpixel_levels_partition_the_image() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[8:40, 8:30] = (200, 40, 40)
    image[20:30, 30:44] = (40, 40, 200)
    image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
    params = SuperpixelProposalParams(min_area=1)
    proposals = SuperpixelProposals(params)(image)
    for level in range(3):
        coverage = proposals.masks()[proposals.level == level].sum(axis=0)
        assert (coverage == 1).all(), "each level is a partition of the image"
    counts = np.bincount(proposals.level, minlength=3)
    assert counts[0] >= counts[1] >= counts[2] >= 1
    assert ((proposals.score >= 0) & (proposals.score <= 1)).all()
    assert ((proposals.stability >= 0) & (proposals.stability <= 1)).all()
    strict = SuperpixelProposals(SuperpixelProposalParams(min_area=200, reference_size=None))(image)
    assert (strict.area >= 200).all() and len(strict.level) < len(proposals.level)


def whole_disfavouring_sam() -> Sam:
    """The tiny SAM with its IoU head biased against whole masks (its four outputs: single, sub-part, part, whole)."""
    sam = tiny_sam()
    with torch.no_grad():
        sam.mask_decoder.iou_prediction_head.layers[-1].bias += torch.tensor([0.0, 0.0, 0.0, -0.6])
    return sam


def test_sam_generator_runs_on_a_tiny_random_model() -> None:
    image = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
    loose = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=4)
    cpu = torch.device("cpu")
    with_priority = SamProposals(SamProposalParams(**loose), cpu, model=whole_disfavouring_sam())(image)
    assert with_priority.shape == (48, 40) and len(with_priority.level) > 0
    assert set(with_priority.level.tolist()) <= {0, 1, 2}
    without = SamProposals(SamProposalParams(**loose, nms_priority=0.0), cpu, model=whole_disfavouring_sam())(image)
    # NMS priority keeps whole masks that higher-scoring parts and sub-parts would otherwise suppress.
    assert (with_priority.level == WHOLE).sum() > (without.level == WHOLE).sum()
    # More whole: a threshold that no whole mask passes lets them through once they get the bonus.
    whole_best = float(with_priority.score[with_priority.level == WHOLE].max())
    strict = dict(loose, pred_iou_thresh=whole_best + 0.05, nms_priority=0.0)
    plain = SamProposals(SamProposalParams(**strict, more_whole=0.0), cpu, model=whole_disfavouring_sam())(image)
    bonus = SamProposals(SamProposalParams(**strict, more_whole=1.0), cpu, model=whole_disfavouring_sam())(image)
    assert (plain.level == WHOLE).sum() == 0 < (bonus.level == WHOLE).sum()


def test_an_image_where_sam_finds_no_mask_in_any_crop_gets_no_proposals() -> None:
    """With crop layers, segment-anything's NMS across crops failed (IndexError) when no mask survived anywhere —
    what random weights gave on every VOC-sized image of the FMA presets' smoke run."""
    image = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
    strict = SamProposalParams(points_per_side=4, crop_n_layers=1, pred_iou_thresh=1.0, stability_score_thresh=1.0)
    proposals = SamProposals(strict, torch.device("cpu"), model=tiny_sam())(image)
    assert proposals.shape == (48, 40) and len(proposals.level) == 0


def test_sam_scores_and_small_regions() -> None:
    iou = torch.tensor([0.80, 0.80, 0.80])
    level = torch.tensor([0, 1, 2])
    assert threshold_scores(iou, level, 0.1).tolist() == pytest.approx([0.80, 0.80, 0.90])
    assert nms_scores(iou, level, 1.0).tolist() == pytest.approx([0.80, 0.80, 1.80])
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:7, 1:7] = True
    mask[3, 3] = False  # a 1-pixel hole
    mask[0, 7] = True  # a 1-pixel island
    cleaned, changed = remove_small_regions(mask, 2)
    assert changed and cleaned[3, 3] and not cleaned[0, 7] and cleaned.sum() == 36


def test_missing_sam_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"sam_vit_b\.pth: SAM checkpoint for vit_b not found.*superpixels"):
        load_sam("vit_b", tmp_path / "sam_vit_b.pth", torch.device("cpu"))


def tiny_dataset(tmp_path: Path):
    params = DataParams.model_validate({"synthetic": {"num_train": 6, "num_val": 2, "image_size": 48}})
    return prepare_dataset(params, tmp_path / "dataset")


def test_corrupt_image_fails_naming_it_and_publishes_nothing(tmp_path: Path) -> None:
    manifest = tiny_dataset(tmp_path)
    name = manifest.entries("train")[3].image
    with zipfile.ZipFile(manifest.root) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(manifest.root, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, b"not a jpeg" if member == name else data)
    bad = manifest.files.location(name)
    out = tmp_path / "proposals.zarr.zip"
    execution = ExecutionParams(chunk_size=3)
    with pytest.raises(ValueError, match=f"sam_masks: 1 image.*{bad}: corrupt or unreadable image"):
        generate_proposals(manifest, tmp_path / "dataset", ProposalParams(), "cpu", out, execution)
    assert not out.exists()
    work = next((tmp_path / ".work").iterdir())  # every other image, its chunk's included, is kept for the rerun
    assert sorted(path.name for path in work.iterdir() if not path.name.startswith(".")) == sorted(
        entry.id for entry in manifest.entries("train") + manifest.entries("val") if entry.image != name
    ) + ["zarr.json"]


def test_partitions_build_the_same_atoms_as_dense_masks() -> None:
    """Superpixel levels become atoms without dense masks; canonical() numbers them as region_index does,
    merging atoms that only a dropped region told apart."""
    whole = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    part = np.array([[0, 1, 2, 2], [0, 1, 2, 3], [4, 4, 4, 4]])
    kept = [np.array([0, 1, 2]), np.array([0, 1, 2, 4])]  # part 3 (one pixel) dropped
    scores = [np.array([0.9, 0.8, 0.7]), np.array([0.6, 0.5, 0.4, 0.3])]
    sparse = Proposals.from_partitions([whole, part], kept, [2, 1], scores, [s + 0.05 for s in scores])
    dense = np.stack([whole == r for r in kept[0]] + [part == r for r in kept[1]])
    assert np.array_equal(sparse.masks(), dense)
    assert sparse.area.tolist() == [4, 4, 4, 2, 2, 3, 4]
    assert sparse.bbox.tolist()[1] == [2, 0, 2, 2]  # whole region 1: x 2..3, y 0..1
    reference = Proposals.from_masks(dense, sparse.level, sparse.score, sparse.stability).canonical()
    canonical = sparse.canonical()
    for name in ("regions", "membership", "level", "score", "stability"):
        assert np.array_equal(getattr(canonical, name), getattr(reference, name)), name
    # the dropped one-pixel part no longer separates its pixel from the rest of part 2's atom
    assert canonical.membership.shape[1] == len(np.unique(dense.reshape(len(dense), -1), axis=1).T)


def test_superpixel_sizes_follow_the_image() -> None:
    params = SuperpixelProposalParams()
    method = SuperpixelProposals(params)
    assert method.sizes(64, 64) == (params.scales, params.min_size, params.min_area)  # the demo: unchanged
    scales, min_size, min_area = method.sizes(256, 256)  # 4× the side, 16× the area
    assert scales == pytest.approx(tuple(4 * s for s in params.scales)) and min_size == 16 * params.min_size
    absolute = SuperpixelProposals(SuperpixelProposalParams(reference_size=None)).sizes(256, 256)
    assert absolute == (params.scales, params.min_size, params.min_area)


def test_superpixels_on_a_voc_sized_photograph_give_sam_like_counts() -> None:
    from PIL import Image
    from skimage import data

    image = np.asarray(Image.fromarray(data.coffee()).resize((500, 375), Image.BILINEAR))
    proposals = SuperpixelProposals(SuperpixelProposalParams())(image)
    assert proposals.shape == (375, 500)
    assert 20 <= len(proposals.level) <= 400

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.classes import COCO_CLASSES
from pipeline.data.datasets import prepare_dataset
from pipeline.data.manifest import DatasetError, load_manifest
from pipeline.data.synthetic import CLASS_CONTEXT, class_part_colours, render_sample
from pipeline.io import read_label_png, write_label_png
from pipeline.params import DataParams, SyntheticDataParams
from pipeline.voc import VOC_CLASSES

SMALL = SyntheticDataParams(num_train=6, num_val=3, image_size=48)


def test_synthetic_is_deterministic_and_voc_shaped() -> None:
    a, b = render_sample(SMALL, "train", 3), render_sample(SMALL, "train", 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, render_sample(SMALL, "train", 4).image)
    for index in range(20):
        sample = render_sample(SMALL, "train", index)
        values = set(np.unique(sample.mask).tolist())
        assert 255 in values and 0 in values  # VOC void borders and background
        assert 1 <= len(sample.labels) <= 3
        assert {v - 1 for v in values - {0, 255}} == set(sample.labels)


def test_every_class_has_a_unique_part_colour_and_a_context() -> None:
    colours = {class_part_colours(i) for i in range(len(VOC_CLASSES))}
    assert len(colours) == len(VOC_CLASSES)
    assert set(CLASS_CONTEXT) == set(VOC_CLASSES)


def test_synthetic_prepare_writes_voc_layout_and_manifest(tmp_path: Path) -> None:
    manifest = prepare_dataset(DataParams(synthetic=SMALL), tmp_path / "dataset")
    assert sorted(p.name for p in (tmp_path / "dataset").iterdir()) == ["manifest.json", "synthetic.zip"]
    root = manifest.files
    assert root.read_bytes("ImageSets/Segmentation/train.txt").decode().split() == [f"train_{i:05d}" for i in range(6)]
    assert len(manifest.entries("val")) == 3
    entry = manifest.entries("train")[0]
    assert Image.open(io.BytesIO(root.read_bytes(entry.mask))).mode == "P"
    assert Image.open(io.BytesIO(root.read_bytes(entry.image))).size == (48, 48)
    labels = json.loads(root.read_bytes("cls_labels.json"))
    assert [VOC_CLASSES[c] for c in entry.labels] == labels[entry.id]
    assert load_manifest(tmp_path / "dataset") == manifest
    assert not (tmp_path / ".dataset.partial").exists()


def make_voc(root: Path, ids: list[str], size=(20, 16)) -> None:
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(ids):
        Image.new("RGB", size, (i * 10, 20, 30)).save(root / "JPEGImages" / f"{image_id}.jpg")
        mask = np.zeros(size[::-1], dtype=np.uint8)
        mask[2:8, 3:9] = 1 + i % 20
        mask[0, :] = 255
        write_label_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids[:-1]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[-1] + "\n")


def voc_params(root: Path, **voc) -> DataParams:
    return DataParams(source="voc", voc={"root": str(root), **voc})


LABELLED = {"label_file": "cls_labels.json"}


def test_voc_reader_derives_labels_from_masks(tmp_path: Path) -> None:
    make_voc(tmp_path / "VOC2012", ["2007_000001", "2007_000002", "2007_000003"])
    manifest = prepare_dataset(voc_params(tmp_path / "VOC2012"), tmp_path / "out")
    assert manifest.name == "voc2012"
    assert [e.labels for e in manifest.entries("train")] == [(0,), (1,)]
    assert manifest.entries("val")[0].id == "2007_000003"
    assert manifest.root == (tmp_path / "VOC2012").resolve()


def test_coco_reader_layout_and_label_file(tmp_path: Path) -> None:
    root = tmp_path / "coco2014"
    for split, folder in (("train", "train2014"), ("val", "val2014")):
        (root / folder).mkdir(parents=True)
        (root / "SegmentationClass" / folder).mkdir(parents=True)
        image_id = f"COCO_{folder}_000000000001"
        Image.new("RGB", (12, 10)).save(root / folder / f"{image_id}.jpg")
        mask = np.zeros((10, 12), dtype=np.uint8)
        mask[1:4, 1:4] = 80  # toothbrush
        write_label_png(root / "SegmentationClass" / folder / f"{image_id}.png", mask)
        (root / "ImageSets").mkdir(exist_ok=True)
        (root / "ImageSets" / f"{split}.txt").write_text(image_id + "\n")
    manifest = prepare_dataset(DataParams(source="coco", coco={"root": str(root)}), tmp_path / "out")
    assert manifest.classes == COCO_CLASSES
    assert manifest.entries("train")[0].labels == (79,)
    (root / "cls_labels.json").write_text(json.dumps({
        "COCO_train2014_000000000001": ["toothbrush"], "COCO_val2014_000000000001": ["unicorn"]}))  # fmt: skip
    with pytest.raises(
        DatasetError, match=r"cls_labels\.json: image 'COCO_val2014_000000000001' has unknown class 'unicorn'"
    ):
        prepare_dataset(DataParams(source="coco", coco={"root": str(root), **LABELLED}), tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def _resize_mask(path: Path) -> None:
    write_label_png(path, np.zeros((5, 5), dtype=np.uint8))


def _out_of_range(path: Path) -> None:
    mask = read_label_png(path)
    mask[5, 5] = 42
    write_label_png(path, mask)


@pytest.mark.parametrize(
    ("damage", "target", "message"),
    [
        (lambda p: p.unlink(), "JPEGImages/2007_000002.jpg", "image file not found"),
        (_corrupt, "JPEGImages/2007_000002.jpg", "corrupt or unreadable image"),
        (lambda p: p.unlink(), "SegmentationClassAug/2007_000002.png", "mask file not found"),
        (_resize_mask, "SegmentationClassAug/2007_000002.png", "does not match image"),
        (_out_of_range, "SegmentationClassAug/2007_000002.png", r"label values \[42\] out of range"),
    ],
)
def test_bad_inputs_fail_naming_the_file_and_leave_no_output(tmp_path: Path, damage, target: str, message: str) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, ["2007_000001", "2007_000002", "2007_000003"])
    damage(root / target)
    with pytest.raises(DatasetError, match=f"{root.resolve() / target}: .*{message}"):
        prepare_dataset(voc_params(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.partial").exists()


def test_missing_dataset_root_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="VOC root not found .*cannot be downloaded"):
        prepare_dataset(voc_params(tmp_path / "nowhere"), tmp_path / "out")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("../../outside/x", "contains a path separator"),
        ("..", "is a relative path"),
        ("/etc/passwd", "contains a path separator"),
        (".hidden", "starts with a dot"),
    ],
)
def test_unsafe_ids_fail_naming_list_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, ["2007_000001", "2007_000002", "2007_000003"])
    listing = root / "ImageSets/Segmentation/train_aug.txt"
    listing.write_text(f"2007_000001\n{line}\n")
    with pytest.raises(DatasetError, match=rf"train_aug\.txt:2: bad image id: .*{message}"):
        prepare_dataset(voc_params(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_params_paths_cannot_leave_the_dataset_root(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, ["2007_000001", "2007_000002", "2007_000003"])
    for key, value in (("train_list", "../../../outside"), ("mask_dir", "a/../../elsewhere"), ("label_file", "/etc/x")):
        with pytest.raises(ValueError, match=rf"voc\.{key}\n.*path '{value}' leads outside the folder"):
            prepare_dataset(DataParams(source="voc", voc={"root": str(root), key: value}), tmp_path / "out")


def test_duplicate_ids_and_split_overlap_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, ["2007_000001", "2007_000002", "2007_000003"])
    listing = root / "ImageSets/Segmentation/train_aug.txt"
    listing.write_text("2007_000001\n2007_000002\n2007_000001\n")
    with pytest.raises(DatasetError, match=r"train_aug\.txt:3: image id '2007_000001' is listed twice"):
        prepare_dataset(voc_params(root), tmp_path / "out")
    listing.write_text("2007_000001\n2007_000003\n")
    with pytest.raises(DatasetError, match=r"val\.txt: 1 image\(s\) also in the train list"):
        prepare_dataset(voc_params(root), tmp_path / "out")


IDS = ["2007_000001", "2007_000002", "2007_000003"]  # make_voc: classes 0 (aeroplane), 1, 2


def test_irn_one_hot_labels_are_read_as_one_hot(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    one_hot = {image_id: [1 if c == i else 0 for c in range(20)] for i, image_id in enumerate(IDS)}
    (root / "cls_labels.json").write_text(json.dumps(one_hot))
    manifest = prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")
    assert [e.labels for e in manifest.entries("train")] == [(0,), (1,)]
    assert manifest.labels["label_format"] == "onehot"
    # IRN's cls_labels.npy: a pickled dict, VOC ids encoded as integers, float32 one-hot vectors
    npy = {int(i.replace("_", "")): np.asarray(v, dtype=np.float32) for i, v in one_hot.items()}
    np.save(root / "cls_labels.npy", npy)
    params = DataParams(source="voc", voc={"root": str(root), "label_file": "cls_labels.npy"})
    manifest = prepare_dataset(params, tmp_path / "out")
    assert [e.labels for e in manifest.entries("train")] == [(0,), (1,)]
    assert manifest.entries("val")[0].labels == (2,)


def test_index_lists_and_unknown_formats(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    (root / "cls_labels.json").write_text(json.dumps({i: [n] for n, i in enumerate(IDS)}))
    manifest = prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")
    assert manifest.labels["label_format"] == "indices"
    assert [e.labels for e in manifest.entries("train")] == [(0,), (1,)]
    (root / "cls_labels.json").write_text(json.dumps({i: {"cls": 1} for i in IDS}))
    with pytest.raises(DatasetError, match="unrecognised image-label format; expected .*one-hot"):
        prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")


def test_labels_contradicting_masks_are_counted_and_stop_unless_allowed(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    labels = {"2007_000001": ["aeroplane", "dog"], "2007_000002": ["bicycle"], "2007_000003": ["bird"]}
    (root / "cls_labels.json").write_text(json.dumps(labels))
    with pytest.raises(DatasetError, match=r"contradict the masks: 1 labelled classes without pixels, 0 .*: allow"):
        prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")
    # contradicting most masks: a misread file, and `allow` is not suggested
    labels["2007_000003"] = ["cat"]
    (root / "cls_labels.json").write_text(json.dumps(labels))
    with pytest.raises(DatasetError, match=r"read as 'names', the labels contradict the masks of 2 of 3 images: 2 "
                                           r"labelled classes without pixels, 1 classes .*another format") as error:
        prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")
    assert "allow" not in str(error.value)
    assert not (tmp_path / "out").exists()
    allowed = DataParams(source="voc", label_mismatch="allow", voc={"root": str(root), **LABELLED})
    manifest = prepare_dataset(allowed, tmp_path / "out")
    assert manifest.entries("train")[0].labels == (0, 11)  # the labels as given
    assert manifest.labels["labels_without_pixels"] == {"train": 1, "val": 1}
    assert manifest.labels["pixels_without_labels"] == {"val": 1}


def test_images_without_foreground_are_dropped_kept_or_refused(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, ["2007_000001", "2007_000002", "2007_000003", "2007_000004"])
    mask = read_label_png(root / "SegmentationClassAug/2007_000002.png")
    write_label_png(root / "SegmentationClassAug/2007_000002.png", np.where(mask == 255, 255, 0).astype(np.uint8))
    manifest = prepare_dataset(voc_params(root), tmp_path / "out")  # default: drop
    assert [e.id for e in manifest.entries("train")] == ["2007_000001", "2007_000003"]
    assert manifest.labels["dropped_no_foreground"] == {"train": 1}
    assert manifest.labels["dropped_ids"] == {"train": ["2007_000002"]}
    kept = prepare_dataset(DataParams(source="voc", no_foreground="keep", voc={"root": str(root)}), tmp_path / "k")
    assert [e.labels for e in kept.entries("train")] == [(0,), (), (2,)]
    with pytest.raises(DatasetError, match="2007_000002.png: image '2007_000002' has no foreground class"):
        prepare_dataset(DataParams(source="voc", no_foreground="error", voc={"root": str(root)}), tmp_path / "e")


def test_missing_image_is_blamed_on_the_image_not_the_label_file(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    (root / "cls_labels.json").write_text(json.dumps({"2007_000001": ["aeroplane"]}))
    (root / "JPEGImages/2007_000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"2007_000002\.jpg: image file not found"):
        prepare_dataset(voc_params(root, **LABELLED), tmp_path / "out")


def test_kept_negatives_flow_through_cams_seeds_refinement_and_evaluation(tmp_path: Path) -> None:
    """data.no_foreground: keep gives images without classes; every per-image step takes them."""
    import torch

    from pipeline.cams.extract import multiscale_cam
    from pipeline.params import AffinityRefineParams, CrfRefineParams, SamsSeedParams, VotingSeedParams
    from pipeline.proposals.regions import Proposals
    from pipeline.refine.affinity import affinity_refine
    from pipeline.refine.crf import crf_refine
    from pipeline.seeds.sams import sams_seeds
    from pipeline.seeds.voting import voting_seeds
    from tests.test_cam_contract import tiny_method

    cams = multiscale_cam(tiny_method("cam", "resnet"), torch.rand(3, 32, 32), [], (1.0, 0.5), True).numpy()
    assert cams.shape == (0, 32, 32)
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, :16], masks[1, 16:] = True, True
    proposals = Proposals.from_masks(masks, np.array([2, 2], np.uint8), np.ones(2, np.float32), np.ones(2, np.float32))
    image, seeds = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)
    for label in (
        sams_seeds(cams, [], SamsSeedParams(), proposals), voting_seeds(cams, [], VotingSeedParams(), proposals),
        crf_refine(image, seeds, cams, [], CrfRefineParams()),
        affinity_refine(image, seeds, cams, [], AffinityRefineParams()),
    ):  # fmt: skip
        assert label.shape == (32, 32) and not label.any()


def test_kept_negatives_are_scored_as_background(tmp_path: Path) -> None:
    from pipeline.data.manifest import Entry, Manifest
    from pipeline.evaluation import evaluate_pseudo_labels
    from pipeline.params import EvaluateParams
    from tests.test_cam_store import write_store

    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (4, 2)).save(root / "n.jpg")
    write_label_png(root / "n.png", np.zeros((2, 4), np.uint8))
    manifest = Manifest("t", root, ("c0",), {"train": [Entry("n", "n.jpg", "n.png", 2, 4, ())]})
    cams = write_store(tmp_path, {"n": (np.zeros((0, 2, 4), np.float32), [])}, {})
    write_label_png(tmp_path / "seeds" / "n.png", np.zeros((2, 4), np.uint8))
    metrics = evaluate_pseudo_labels(
        manifest, cams, {"seeds": tmp_path / "seeds"}, EvaluateParams(), {}, tmp_path / "e"
    )
    assert metrics["cam"]["gt_free"]["miou"] == 1.0 and metrics["seeds"]["miou"] == 1.0


def test_writers_and_readers_refuse_ids_that_leave_their_root(tmp_path: Path) -> None:
    """Ids are checked when lists are read; writers still build every path through pipeline.io.inside."""
    from pipeline.cams.store import CamStoreWriter
    from pipeline.io import LabelSet, UnsafePathError
    from pipeline.proposals.regions import Proposals
    from pipeline.proposals.store import ProposalStoreWriter

    out = tmp_path / "artifacts"
    cams = CamStoreWriter(out / "cams", {"classes": ["c0"]})
    with pytest.raises(UnsafePathError, match="leads outside this directory"):
        cams.write("../../escape", np.zeros((1, 2, 2), np.float32), [0])
    one = np.ones((1, 2, 2), dtype=bool)
    proposals = Proposals.from_masks(one, np.array([2], np.uint8), np.ones(1, np.float32), np.ones(1, np.float32))
    with pytest.raises(UnsafePathError):
        ProposalStoreWriter(out / "proposals", {}).write("../../escape", proposals)
    with pytest.raises(UnsafePathError):
        LabelSet(out / "seeds").read("../../escape", (2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts"]
    manifest = prepare_dataset(DataParams(synthetic=SMALL), tmp_path / "dataset")
    raw = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    raw["splits"]["train"][0]["id"] = "../../outside"
    (tmp_path / "dataset" / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="manifest.json: bad image id"):
        load_manifest(tmp_path / "dataset")
    assert manifest.entries("train")

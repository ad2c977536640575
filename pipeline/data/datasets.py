"""Dataset readers (synthetic, PASCAL VOC 2012, COCO 2014) validated into one manifest.

The manifest lists, per split, every image with its mask, size, image-level labels and a digest of both files
(so any changed file changes the manifest that downstream stages depend on). Readers check every
file before anything is written: a missing file, a corrupt image, an image/mask size mismatch, a label value
out of range, an unknown class name, an unsafe or repeated image id or a train/val overlap raises
:class:`DatasetError` naming the file (and line). Images whose mask has no foreground class are dropped, kept as
negatives or refused (``data.no_foreground``); image-level labels that contradict the masks are counted and
refused unless ``data.label_mismatch: allow``. The manifest records both under ``labels``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image, UnidentifiedImageError

from pipeline.data.classes import COCO_CLASSES
from pipeline.data.layouts import dataset_layout, list_lines
from pipeline.data.manifest import MANIFEST_NAME, DatasetError, Entry, Manifest, load_manifest
from pipeline.data.synthetic import write_synthetic_voc
from pipeline.io import fingerprint, id_problem, inside, link_target_inside, pack_zip, read_label_png, write_json
from pipeline.params import DataParams
from pipeline.registry import Registry
from pipeline.voc import IGNORE_INDEX, VOC_CLASSES


def read_ids(path: Path) -> dict[str, int]:
    """The image ids of a split list (first column of each non-blank line) with their line numbers, each
    checked to be a safe file name and listed once; errors name the list file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: image list not found")
    try:
        rows = list_lines(path)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not a UTF-8 text file ({error})") from None
    ids: dict[str, int] = {}
    for number, columns in rows:
        image_id = columns[0]
        problem = id_problem(image_id)
        if problem and len(columns) > 1 and "/" in image_id:
            problem += (" — a DeepLab-style list (image path, mask path)? only an id per line is read "
                        "(e.g. 2007_000032): cut -d' ' -f1 LIST | xargs -n1 basename | sed 's/\\.jpg$//'")  # fmt: skip
        if problem:
            raise DatasetError(f"{path}:{number}: bad image id: {problem}")
        if image_id in ids:
            first = ids[image_id]
            raise DatasetError(f"{path}:{number}: image id '{image_id}' is listed twice (first on line {first})")
        ids[image_id] = number
    if not ids:
        raise DatasetError(f"{path}: image list is empty")
    return ids


LABEL_FORMATS = (
    "a JSON object or .npy dict mapping each image id to a list of class names, a list of 0-based class "
    "indices (background excluded), a one-hot vector of one entry per class (IRN / PSA cls_labels), or one of "
    "one entry per class after a first background entry"
)


def _decode_key(key: object) -> str:
    """Image id of a label-file key; IRN's cls_labels.npy stores VOC ids as integers (2007000032)."""
    if isinstance(key, (int, np.integer)):
        text = str(int(key))
        return f"{text[:4]}_{text[4:]}" if len(text) == 10 else text
    return str(key)


def _label_format(path: Path, raw: dict, num_classes: int) -> str:
    """``names``, ``onehot``, ``onehot_background`` (C + 1 entries, the background's first, as VOC numbers
    its masks) or ``indices``, decided for the whole file; anything else is rejected. Index lists hold each
    class once, so a 0/1 vector of C or C + 1 entries is never one of them."""
    values = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in raw.values()]
    if not all(isinstance(v, list) for v in values):
        raise DatasetError(f"{path}: unrecognised image-label format; expected {LABEL_FORMATS}")
    items = [x for v in values for x in v]
    if items and all(isinstance(x, str) for x in items):
        return "names"
    numbers = all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in items)
    binary = numbers and all(float(x) in (0.0, 1.0) for x in items)
    if binary and all(len(v) == num_classes for v in values):
        return "onehot"
    if binary and all(len(v) == num_classes + 1 for v in values):
        return "onehot_background"
    if numbers and all(float(x).is_integer() for x in items):
        return "indices"
    raise DatasetError(f"{path}: unrecognised image-label format; expected {LABEL_FORMATS}")


# What a .npy of plain containers and arrays pickles (numpy 1.x and 2.x module names); nothing else is built.
NPY_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
})  # fmt: skip


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and plain containers only: any other global a file names (a
    function to call, a class to build) is refused before anything runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and plain containers")


def read_npy(path: Path) -> Any:
    """A ``.npy`` file's array, an object array (IRN's and PSA's pickled label dicts) read by
    :class:`ArrayUnpickler`, never by ``pickle`` itself: a crafted file cannot run code."""
    with path.open("rb") as file:
        version = npy_format.read_magic(file)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        _, _, dtype = read_header(file)
        if dtype.hasobject:
            return ArrayUnpickler(file).load()
        file.seek(0)
        return npy_format.read_array(file, allow_pickle=False)


def read_label_file(path: Path, classes: tuple[str, ...]) -> tuple[dict[str, tuple[int, ...]], str]:
    """Image-level labels (``.json`` or ``.npy``): id → 0-based class indices, and the format read.

    The format is recognised for the whole file (see ``LABEL_FORMATS``): one-hot vectors are lists of exactly
    one 0/1 entry per class (or per class and background), so they are never mistaken for index lists. A
    ``.npy`` file is a pickled dict as IRN and PSA write it, read by :func:`read_npy`, which builds numpy arrays
    and plain containers only. A file named in params that does not exist is an error, never "no labels".
    """
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found (data.<source>.label_file; null takes the labels from "
                           f"the masks)")  # fmt: skip
    if path.suffix == ".npy":
        try:
            loaded = read_npy(path)
            shaped = isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ()
            raw = loaded.item() if shaped else None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise DatasetError(f"{path}: not a readable .npy label file ({error})") from error
    else:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: unrecognised image-label format; expected {LABEL_FORMATS}")
    fmt = _label_format(path, raw, len(classes))
    labels = {}
    for key, value in raw.items():
        image_id = _decode_key(key)
        if fmt in ("onehot", "onehot_background"):
            indices = [i for i, x in enumerate(value[1:] if fmt == "onehot_background" else value) if float(x) == 1]
        else:
            indices = []
            for item in value:
                if fmt == "names" and item in classes:
                    indices.append(classes.index(item))
                elif fmt == "indices" and 0 <= int(item) < len(classes):
                    indices.append(int(item))
                else:
                    raise DatasetError(f"{path}: image '{image_id}' has unknown class {item!r} ({fmt} format)")
        labels[image_id] = tuple(sorted(set(indices)))
    return labels, fmt


MISREAD_FRACTION = 0.5  # labels contradicting more masks than this are a misread file, not noisy labels


@dataclass
class LabelReport:
    """What validation found about image-level labels, written into the manifest and the stage report."""

    label_file: str = ""
    label_format: str = "from masks"
    dropped_no_foreground: dict[str, list[str]] = field(default_factory=dict)
    kept_no_foreground: dict[str, int] = field(default_factory=dict)
    labels_without_pixels: dict[str, int] = field(default_factory=dict)  # image-class pairs, per split
    pixels_without_labels: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    images_mismatched: int = 0

    def note_mismatch(self, split: str, image_id: str, missing: set[int], extra: set[int]) -> None:
        self.images_mismatched += 1
        for counts, found in ((self.labels_without_pixels, missing), (self.pixels_without_labels, extra)):
            if found:
                counts[split] = counts.get(split, 0) + len(found)
        if len(self.examples) < 5:
            self.examples.append(
                f"'{image_id}': labelled {sorted(missing)} without pixels, pixels of {sorted(extra)} unlabelled"
            )

    def mismatches(self) -> int:
        return sum(self.labels_without_pixels.values()) + sum(self.pixels_without_labels.values())

    def summary(self) -> dict[str, Any]:
        return {
            "label_file": self.label_file, "label_format": self.label_format,
            "dropped_no_foreground": {s: len(ids) for s, ids in self.dropped_no_foreground.items()},
            "dropped_ids": self.dropped_no_foreground,
            "kept_no_foreground": self.kept_no_foreground,
            "labels_without_pixels": self.labels_without_pixels,
            "pixels_without_labels": self.pixels_without_labels,
        }  # fmt: skip


def validate_entry(
    root: Path, image_rel: str, mask_rel: str, image_id: str, classes: tuple[str, ...], links: str = "inside",
    listed: str = "",
) -> tuple[Entry, tuple[int, ...]]:  # fmt: skip
    """Open the image and its mask, check sizes and label values; return the entry (labels from the mask)
    and the classes with pixels in the mask. ``links`` is ``data.symlinks``; ``listed`` (``list:line``) is
    added to a missing file's message."""
    image_path, mask_path = inside(root, image_rel), inside(root, mask_rel)
    for path in (image_path, mask_path):
        link_target_inside(root, path, links)
    where = f" (listed in {listed})" if listed else ""
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: image file not found{where}")
    try:
        with Image.open(image_path) as image:
            image.load()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{image_path}: corrupt or unreadable image ({error})") from error
    if not mask_path.is_file():
        raise DatasetError(f"{mask_path}: mask file not found{where}")
    try:
        mask = read_label_png(mask_path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{mask_path}: corrupt or unreadable mask ({error})") from error
    if mask.shape != (height, width):
        raise DatasetError(
            f"{mask_path}: mask size {mask.shape[1]}×{mask.shape[0]} does not match image {width}×{height}"
        )
    values = np.unique(mask)
    bad = [int(v) for v in values if v != IGNORE_INDEX and v > len(classes)]
    if bad:
        raise DatasetError(f"{mask_path}: label values {bad} out of range 0..{len(classes)} (255 = ignore)")
    present = tuple(int(v) - 1 for v in values if 0 < v < IGNORE_INDEX)
    digest = fingerprint(image_path, mask_path)[:16]
    return Entry(image_id, image_rel, mask_rel, height, width, present, digest), present


def _build_splits(
    root: Path, classes: tuple[str, ...], lists: dict[str, Path], image_rel: Callable[[str, str], str],
    mask_rel: Callable[[str, str], str], label_file: Path | None, params: DataParams, progress=None,
) -> tuple[dict[str, list[Entry]], LabelReport]:  # fmt: skip
    """Validate every listed image; apply ``no_foreground``, ``label_mismatch`` and ``symlinks`` (see
    DataParams). ``label_file`` None: the labels are the classes in each mask."""
    for path in [*lists.values(), *([label_file] if label_file is not None else [])]:
        link_target_inside(root, path, params.symlinks)
    labels, fmt = read_label_file(label_file, classes) if label_file is not None else (None, "from masks")
    report = LabelReport(label_file=label_file.name if label_file is not None else "", label_format=fmt)
    ids_by_split = {split: read_ids(path) for split, path in lists.items()}
    _check_disjoint(lists, ids_by_split)
    splits = {}
    for split, ids in ids_by_split.items():
        items: Iterable[str] = progress(ids, total=len(ids), desc=f"validate {split}") if progress else ids
        entries = []
        for image_id in items:
            entry, present = validate_entry(
                root, image_rel(split, image_id), mask_rel(split, image_id), image_id, classes, params.symlinks,
                f"{lists[split]}:{ids[image_id]}",
            )  # fmt: skip
            if not present:
                if params.no_foreground == "error":
                    raise DatasetError(
                        f"{root / entry.mask}: image '{image_id}' has no foreground class (data.no_foreground: "
                        f"drop or keep to accept such images)"
                    )
                if params.no_foreground == "drop":
                    report.dropped_no_foreground.setdefault(split, []).append(image_id)
                    continue
                report.kept_no_foreground[split] = report.kept_no_foreground.get(split, 0) + 1
            if labels is not None:
                if image_id not in labels:
                    raise DatasetError(
                        f"{label_file}: no image-level labels for '{image_id}' (listed in {lists[split]})"
                    )
                given = labels[image_id]
                missing, extra = set(given) - set(present), set(present) - set(given)
                if missing or extra:
                    report.note_mismatch(split, image_id, missing, extra)
                entry = replace(entry, labels=given)
            entries.append(entry)
        if not entries:
            raise DatasetError(f"{lists[split]}: no image of the {split} split has a foreground class")
        splits[split] = entries
    if report.mismatches() and params.label_mismatch == "error":
        counts = (f"{sum(report.labels_without_pixels.values())} labelled classes without pixels, "
                  f"{sum(report.pixels_without_labels.values())} classes with pixels but no label "
                  f"(e.g. {report.examples[0]})")  # fmt: skip
        images = sum(len(entries) for entries in splits.values())
        if report.images_mismatched > MISREAD_FRACTION * images:
            raise DatasetError(
                f"{label_file}: read as '{fmt}', the labels contradict the masks of {report.images_mismatched} of "
                f"{images} images: {counts}; the file is probably in another format or class order (expected "
                f"{LABEL_FORMATS}, classes in the order {', '.join(classes[:3])}, …); fix or convert it"
            )
        raise DatasetError(
            f"{label_file}: image labels contradict the masks: {counts}; set data.label_mismatch: allow to "
            f"train on the labels as given"
        )
    return splits, report


def _check_disjoint(lists: dict[str, Path], ids_by_split: dict[str, list[str]]) -> None:
    names = list(ids_by_split)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(set(ids_by_split[first]) & set(ids_by_split[second]))
            if shared:
                raise DatasetError(
                    f"{lists[second]}: {len(shared)} image(s) also in the {first} list {lists[first]} "
                    f"(e.g. '{shared[0]}'); train and val must not overlap"
                )


DATASETS: Registry[Callable[..., tuple[Path, str, tuple[str, ...], dict[str, list[Entry]], LabelReport]]] = Registry(
    "dataset"
)


SYNTHETIC_ARCHIVE = "synthetic.zip"


@DATASETS.register("synthetic")
def prepare_synthetic(params: DataParams, out_dir: Path, progress=None):
    """Generate the embedded benchmark in VOC layout, validate it like VOC, and pack it into
    ``out_dir/synthetic.zip`` (the manifest's root): one file instead of thousands keeps DVC's no-op check cheap,
    and ``unzip`` gives back the VOC tree."""
    root = out_dir / "synthetic"
    write_synthetic_voc(params.synthetic, root, progress=progress)
    lists = {s: root / "ImageSets" / "Segmentation" / f"{s}.txt" for s in ("train", "val")}
    splits, report = _build_splits(
        root, VOC_CLASSES, lists, lambda _s, i: f"JPEGImages/{i}.jpg", lambda _s, i: f"SegmentationClass/{i}.png",
        root / "cls_labels.json", params, progress,
    )  # fmt: skip
    pack_zip(root, out_dir / SYNTHETIC_ARCHIVE)
    shutil.rmtree(root)
    return Path(SYNTHETIC_ARCHIVE), "synthetic-voc", VOC_CLASSES, splits, report


@DATASETS.register("voc")
def prepare_voc(params: DataParams, out_dir: Path, progress=None):
    """PASCAL VOC 2012: ``JPEGImages``, ``{mask_dir}`` PNGs, ``ImageSets/Segmentation/{list}.txt``."""
    layout = dataset_layout(params)
    splits, report = _build_splits(layout.root, VOC_CLASSES, layout.lists, layout.image, layout.mask,
                                   layout.label_file, params, progress)  # fmt: skip
    return layout.root, "voc2012", VOC_CLASSES, splits, report


@DATASETS.register("coco")
def prepare_coco(params: DataParams, out_dir: Path, progress=None):
    """COCO 2014, WSSS layout (values 0 = background, 1..80 = classes, 255 = ignore; pipeline/data/layouts.py)."""
    layout = dataset_layout(params)
    splits, report = _build_splits(layout.root, COCO_CLASSES, layout.lists, layout.image, layout.mask,
                                   layout.label_file, params, progress)  # fmt: skip
    return layout.root, "coco2014", COCO_CLASSES, splits, report


def prepare_dataset(params: DataParams, out_dir: Path, progress=None) -> Manifest:
    """Generate or validate the selected dataset into a fresh ``out_dir`` with its manifest, which also records
    the label report (label format, dropped images, label/mask contradictions).

    Work happens in a sibling temporary directory renamed into place at the end, so a failure leaves no
    partial output behind.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        root, name, classes, splits, report = DATASETS.get(params.source)(params, staging, progress)
        manifest: dict[str, Any] = {
            "name": name,
            "root": str(root),
            "classes": list(classes),
            "labels": report.summary(),
            "splits": {s: [{**asdict(e), "labels": list(e.labels)} for e in entries] for s, entries in splits.items()},
        }
        write_json(staging / MANIFEST_NAME, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return load_manifest(out_dir)

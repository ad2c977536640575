"""Deterministic synthetic benchmark written in PASCAL VOC layout.

Each object of a VOC class is a *body* shared by every class of its super-category (animals: a horizontal
ellipse with spots, vehicles: a wide rounded box with stripes, indoor objects: a tall box, person: an upright
ellipse) plus a small *discriminative part* whose two colours (rim and core) and shape belong to its class
alone. A classifier only needs the part to name the class, so its CAM under-activates the body. Most objects
also stand on a class-specific *context* texture (boat on water, train on rails, cow on grass …) that is
labelled background, so the CAM over-activates onto it. Images hold 1–3 objects, mostly of different classes;
masks carry 255 on object borders as VOC does. Every image is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.io import atomic_path, write_label_png
from pipeline.params import SyntheticDataParams
from pipeline.voc import IGNORE_INDEX, VOC_CLASSES, VOC_SUPERCATEGORIES

GROUP_OF = {name: group for group, names in VOC_SUPERCATEGORIES.items() for name in names}

# Body look per super-category: shape, aspect (width / height), base RGB, texture.
GROUP_BODY = {
    "animal": ("ellipse", 1.6, (0.52, 0.40, 0.30), "spots"),
    "vehicle": ("box", 2.0, (0.46, 0.50, 0.56), "hstripes"),
    "indoor": ("box", 0.75, (0.70, 0.62, 0.50), "vstripes"),
    "person": ("ellipse", 0.5, (0.78, 0.60, 0.50), "plain"),
}
PART_SHAPES = ("disc", "square", "diamond", "triangle", "ring", "cross", "bar")

# Context textures: name → (pattern, colour A, colour B).
CONTEXT_TEXTURES = {
    "sky": ("gradient", (0.55, 0.75, 0.95), (0.85, 0.92, 1.00)),
    "water": ("waves", (0.10, 0.30, 0.60), (0.25, 0.50, 0.80)),
    "rails": ("rails", (0.45, 0.42, 0.38), (0.15, 0.13, 0.12)),
    "road": ("dashes", (0.22, 0.22, 0.24), (0.90, 0.90, 0.85)),
    "grass": ("blades", (0.20, 0.50, 0.15), (0.35, 0.65, 0.25)),
    "tabletop": ("hstripes", (0.55, 0.35, 0.20), (0.65, 0.45, 0.28)),
    "floor": ("checker", (0.80, 0.78, 0.72), (0.55, 0.52, 0.48)),
    "carpet": ("dots", (0.60, 0.15, 0.18), (0.85, 0.70, 0.30)),
    "wall": ("bricks", (0.75, 0.45, 0.35), (0.90, 0.88, 0.85)),
    "windowsill": ("vstripes", (0.92, 0.92, 0.95), (0.70, 0.80, 0.90)),
    "branches": ("diagonal", (0.85, 0.88, 0.80), (0.40, 0.28, 0.15)),
    "pavement": ("tiles", (0.68, 0.68, 0.68), (0.50, 0.50, 0.52)),
    "snow": ("speckle", (0.95, 0.96, 0.98), (0.80, 0.84, 0.90)),
    "hay": ("diagonal", (0.85, 0.75, 0.40), (0.70, 0.58, 0.25)),
}
CLASS_CONTEXT = {
    "aeroplane": "sky", "bicycle": "pavement", "bird": "branches", "boat": "water", "bottle": "tabletop",
    "bus": "road", "car": "road", "cat": "carpet", "chair": "floor", "cow": "grass", "diningtable": "floor",
    "dog": "snow", "horse": "hay", "motorbike": "road", "person": "pavement", "pottedplant": "windowsill",
    "sheep": "grass", "sofa": "carpet", "train": "rails", "tvmonitor": "wall",
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # H×W×3 uint8
    mask: np.ndarray  # H×W uint8, 0 background, 1..20 classes, 255 borders
    labels: tuple[int, ...]  # 0-based class indices present
    contexts: tuple[str, ...] = ()  # context textures painted (CONTEXT_TEXTURES names), sorted


# Six saturated colours far from the muted bodies; a class's part is a pair (rim, core) of two of them.
PART_COLOURS = ((0.95, 0.05, 0.05), (0.05, 0.85, 0.05), (0.10, 0.20, 1.00), (1.00, 0.90, 0.00),
                (0.95, 0.00, 0.95), (0.00, 0.95, 0.95))  # fmt: skip
PART_COLOUR_PAIRS = tuple((a, b) for a in range(6) for b in range(6) if a != b)


def class_part_colours(class_index: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(rim, core) colours of the class's part: any two classes differ in at least one of them."""
    rim, core = PART_COLOUR_PAIRS[(class_index * 7) % len(PART_COLOUR_PAIRS)]
    return PART_COLOURS[rim], PART_COLOURS[core]


def class_part_shape(class_index: int) -> str:
    """The part shape: classes of one super-category get different shapes."""
    name = VOC_CLASSES[class_index]
    return PART_SHAPES[VOC_SUPERCATEGORIES[GROUP_OF[name]].index(name) % len(PART_SHAPES)]


def _pattern(kind: str, yy: np.ndarray, xx: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A texture in [0, 1] (0 → colour A, 1 → colour B) over pixel coordinates."""
    phase = rng.uniform(0, 2 * np.pi)
    period = max(3.0, scale)
    if kind == "gradient":
        return np.clip((yy - yy.min()) / max(1.0, np.ptp(yy)), 0, 1)
    if kind == "waves":
        return (np.sin(2 * np.pi * yy / period + 1.5 * np.sin(2 * np.pi * xx / (2 * period)) + phase) > 0) * 1.0
    if kind == "rails":
        ties = (np.mod(xx + phase, period) < 1.5) * 0.6
        rails = (np.mod(yy + phase, period * 1.5) < 1.5) * 1.0
        return np.maximum(ties, rails)
    if kind == "dashes":
        return ((np.abs(np.mod(yy + phase, 2 * period) - period) < 1.0) & (np.mod(xx, 2 * period) < period)) * 1.0
    if kind == "blades":
        return (np.sin(2 * np.pi * xx / 3.0 + phase + 0.8 * np.sin(yy / 2.0)) > 0.3) * 1.0
    if kind == "hstripes":
        return (np.mod(yy + phase, period) < period / 2) * 1.0
    if kind == "vstripes":
        return (np.mod(xx + phase, period) < period / 2) * 1.0
    if kind == "diagonal":
        return (np.mod(xx + yy + phase, period) < period / 3) * 1.0
    if kind == "checker":
        return ((np.floor(xx / period) + np.floor(yy / period)) % 2) * 1.0
    if kind == "tiles":
        return ((np.mod(xx, period) < 1) | (np.mod(yy, period) < 1)) * 1.0
    if kind == "dots":
        return (
            (np.mod(xx, period) - period / 2) ** 2 + (np.mod(yy, period) - period / 2) ** 2 < (period / 4) ** 2
        ) * 1.0
    if kind == "bricks":
        offset = (np.floor(yy / period) % 2) * period
        return ((np.mod(yy, period) < 1) | (np.mod(xx + offset, 2 * period) < 1)) * 1.0
    if kind == "speckle":
        return (rng.random(yy.shape) < 0.25) * 1.0
    if kind == "spots":
        cell = period * 1.5
        dy, dx = np.mod(yy, cell) - cell / 2, np.mod(xx + phase, cell) - cell / 2
        return (dx**2 + dy**2 < (period * 0.35) ** 2) * 1.0
    if kind == "plain":
        return np.zeros_like(yy)
    raise ValueError(f"unknown texture pattern '{kind}'")


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, hh: float, hw: float) -> np.ndarray:
    """Boolean mask of a shape centred at (cy, cx) with half-height hh and half-width hw."""
    dy, dx = (yy - cy) / hh, (xx - cx) / hw
    if shape in ("ellipse", "disc"):
        return dx**2 + dy**2 <= 1.0
    if shape == "box":
        return (np.abs(dx) <= 1) & (np.abs(dy) <= 1) & ~((np.abs(dx) > 0.8) & (np.abs(dy) > 0.8))
    if shape == "square":
        return (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.0
    if shape == "triangle":
        return (dy <= 1) & (np.abs(dx) <= (dy + 1) / 2)
    if shape == "ring":
        radius = dx**2 + dy**2
        return (radius <= 1.0) & (radius >= 0.3)
    if shape == "cross":
        return ((np.abs(dx) <= 1) & (np.abs(dy) <= 0.35)) | ((np.abs(dy) <= 1) & (np.abs(dx) <= 0.35))
    if shape == "bar":
        return (np.abs(dx) <= 1) & (np.abs(dy) <= 0.45)
    raise ValueError(f"unknown shape '{shape}'")


def _paint(canvas: np.ndarray, where: np.ndarray, colour_a, colour_b, pattern: np.ndarray, contrast: float) -> None:
    a, b = np.asarray(colour_a), np.asarray(colour_b)
    mix = pattern[..., None] * contrast
    canvas[where] = ((1 - mix) * a + mix * b)[where]


def _border(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a change of label (VOC's void band around objects)."""
    edge = np.zeros(label.shape, dtype=bool)
    if width == 0:
        return edge
    padded = np.pad(label, 1, mode="edge")
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] != label
    band = edge.copy()
    for _ in range(width - 1):
        padded = np.pad(band, 1)
        band = band | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return band & ((label > 0) | edge)


def render_sample(params: SyntheticDataParams, split: str, index: int) -> SyntheticSample:
    """Render one image and its mask; deterministic in (params.seed, split, index)."""
    split_key = {"train": 1, "val": 2}[split]
    rng = np.random.default_rng([params.seed, split_key, index])
    size = params.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)

    # Background: a muted low-frequency field plus fine noise.
    coarse = rng.uniform(0.35, 0.65, size=(4, 4, 3))
    field = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR))
    canvas = field.astype(np.float64) / 255.0

    n_objects = int(rng.choice([1, 2, 3], p=params.object_counts))
    classes = rng.choice(len(VOC_CLASSES), size=n_objects, replace=rng.random() < 0.1).tolist()

    # Stray context without its object (water without a boat).
    contexts: set[str] = set()
    if rng.random() < params.stray_context_probability:
        stray_name = CLASS_CONTEXT[VOC_CLASSES[int(rng.integers(len(VOC_CLASSES)))]]
        contexts.add(stray_name)
        stray = CONTEXT_TEXTURES[stray_name]
        hh, hw = rng.uniform(0.15, 0.3, size=2) * size
        cy, cx = rng.uniform(0.2, 0.8, size=2) * size
        region = (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw)
        _paint(canvas, region, stray[1], stray[2], _pattern(stray[0], yy, xx, size / 12, rng), 1.0)

    label = np.zeros((size, size), dtype=np.uint8)
    instance = np.zeros((size, size), dtype=np.int16)  # 0 = none, k = k-th placed object
    placed: list[tuple[np.ndarray, np.ndarray]] = []  # (object mask, part mask) per placed object
    drawings = []
    for class_index in classes:
        name = VOC_CLASSES[class_index]
        body_shape, aspect, body_rgb, body_texture = GROUP_BODY[GROUP_OF[name]]
        for _ in range(30):
            extent = rng.uniform(*params.object_scale) * size
            hw = extent / 2 if aspect >= 1 else extent * aspect / 2
            hh = hw / aspect
            cy = rng.uniform(hh, size - hh)
            cx = rng.uniform(hw, size - hw)
            body = _shape_mask(body_shape, yy, xx, cy, cx, hh, hw)
            # The part sits at one end of the body (head, cabin, top …), size set by part_fraction.
            part_half = np.sqrt(params.part_fraction * body.sum()) / 2
            if aspect >= 1:
                py, px = cy - 0.1 * hh, cx + rng.choice([-1, 1]) * (hw - part_half)
            else:
                py, px = cy - (hh - part_half), cx
            core = (np.abs(yy - py) <= part_half / 2) & (np.abs(xx - px) <= part_half / 2)
            part = _shape_mask(class_part_shape(class_index), yy, xx, py, px, part_half, part_half) | core
            part_core = core * 1.0
            obj = body | part
            # Keep every earlier object at least half visible, its part too.
            if all((m & ~obj).sum() >= 0.5 * m.sum() and (p & ~obj).sum() >= 0.5 * p.sum() for m, p in placed):
                break
        else:
            continue
        placed.append((obj, part))
        instance[obj] = len(placed)
        label[obj] = class_index + 1
        drawings.append((class_index, cy, cx, hh, hw, body, part, part_core, body_rgb, body_texture))

    # Contexts first (behind every object), then the objects in placement order.
    for class_index, cy, cx, hh, hw, *_ in drawings:
        if rng.random() >= params.context_probability:
            continue
        contexts.add(CLASS_CONTEXT[VOC_CLASSES[class_index]])
        pattern, colour_a, colour_b = CONTEXT_TEXTURES[CLASS_CONTEXT[VOC_CLASSES[class_index]]]
        ch, cw = hh * rng.uniform(1.4, 1.9), hw * rng.uniform(1.4, 1.9)
        region = (np.abs(yy - cy - 0.3 * hh) <= ch) & (np.abs(xx - cx) <= cw)
        _paint(canvas, region, colour_a, colour_b, _pattern(pattern, yy, xx, size / 12, rng), 1.0)
    for class_index, _cy, _cx, _hh, _hw, body, part, part_core, body_rgb, body_texture in drawings:
        jitter = np.clip(np.asarray(body_rgb) + rng.uniform(-0.06, 0.06, size=3), 0, 1)
        texture = _pattern(body_texture, yy, xx, size / 10, rng)
        _paint(canvas, body, jitter, jitter * 0.7, texture, 1.0)
        rim, core = class_part_colours(class_index)
        _paint(canvas, part, rim, core, part_core, 1.0)

    canvas = np.clip(canvas + rng.normal(0, 0.03, size=canvas.shape), 0, 1)
    image = (canvas * 255 + 0.5).astype(np.uint8)
    mask = label.copy()
    mask[_border(label, params.border_width)] = IGNORE_INDEX
    present = sorted({int(v) - 1 for v in np.unique(label) if 0 < v < IGNORE_INDEX})
    return SyntheticSample(image=image, mask=mask, labels=tuple(present), contexts=tuple(sorted(contexts)))


def iter_split(params: SyntheticDataParams, split: str) -> Iterator[tuple[str, SyntheticSample]]:
    count = params.num_train if split == "train" else params.num_val
    for index in range(count):
        yield f"{split}_{index:05d}", render_sample(params, split, index)


def write_synthetic_voc(params: SyntheticDataParams, root: Path, progress=None) -> None:
    """Write the benchmark under ``root`` in VOC layout (JPEGImages, SegmentationClass, ImageSets, labels)."""
    root = Path(root)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    image_labels: dict[str, list[str]] = {}
    for split in ("train", "val"):
        ids = []
        count = params.num_train if split == "train" else params.num_val
        samples = iter_split(params, split)
        for sample_id, sample in progress(samples, total=count, desc=f"synthetic {split}") if progress else samples:
            with atomic_path(root / "JPEGImages" / f"{sample_id}.jpg") as tmp:
                Image.fromarray(sample.image).save(tmp, format="JPEG", quality=params.jpeg_quality, subsampling=0)
            write_label_png(root / "SegmentationClass" / f"{sample_id}.png", sample.mask)
            image_labels[sample_id] = [VOC_CLASSES[c] for c in sample.labels]
            ids.append(sample_id)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "cls_labels.json").write_text(json.dumps(image_labels, indent=1, sort_keys=True) + "\n")

"""A second VOC-layout dataset, unlike the embedded benchmark: what a user's own small dataset looks like.

Non-square images of 150–260 px a side (not 64 × 64), one or two *polygon* objects each (a class's vertex
count and spikiness), filled with its super-category's colour, carrying a *striped part* whose two colours and
stripe angle belong to its class; a horizontal *context band* (water under boats, grass under animals …,
labelled background) under most objects; 255 on object borders as VOC draws them. Every image is a pure
function of ``(seed, split, index)``.

``python -m benchmarks.polygon_voc ROOT`` writes ``ROOT/JPEGImages``, ``SegmentationClassAug`` and
``ImageSets/Segmentation/{train_aug,val}.txt`` (600 / 150 images by default), the layout ``data.source: voc``
reads; ``benchmarks/data_defaults.py`` runs the default pipeline on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.io import write_label_png
from pipeline.voc import IGNORE_INDEX, VOC_CLASSES, VOC_SUPERCATEGORIES

SIDE_RANGE = (150, 260)
SATURATED = ((230, 30, 30), (30, 200, 40), (40, 60, 240), (250, 220, 0), (220, 0, 220), (0, 220, 220))
STRIPE_PAIRS = tuple((a, b) for a in range(6) for b in range(a + 1, 6))  # 15 pairs x 2 angles: 20 classes
GROUP_COLOUR = {"animal": (150, 110, 80), "vehicle": (120, 125, 140), "indoor": (175, 160, 120),
                "person": (200, 150, 125)}  # fmt: skip
GROUP_CONTEXT = {"animal": ((60, 130, 50), (90, 160, 70)), "vehicle": ((60, 60, 65), (200, 200, 190)),
                 "indoor": ((140, 90, 50), (165, 115, 70)), "person": ((170, 170, 170), (130, 130, 135))}  # fmt: skip
GROUP_OF = {name: group for group, names in VOC_SUPERCATEGORIES.items() for name in names}


def class_look(class_index: int) -> tuple[int, float, tuple, tuple, float]:
    """(vertices, spikiness, stripe colour A, stripe colour B, stripe angle) of a class (0-based)."""
    a, b = STRIPE_PAIRS[class_index % len(STRIPE_PAIRS)]
    angle = (0.0, np.pi / 2)[class_index // len(STRIPE_PAIRS)] + (class_index % 3) * np.pi / 6
    return 3 + class_index % 5, 0.15 + 0.1 * (class_index % 4), SATURATED[a], SATURATED[b], angle


def polygon(rng: np.random.Generator, cy: float, cx: float, radius: float, vertices: int, spikiness: float):
    """Vertices of a star-ish polygon: ``vertices`` outer points, radii jittered by ``spikiness``."""
    angles = np.sort(rng.uniform(0, 2 * np.pi / vertices) + np.arange(vertices) * 2 * np.pi / vertices)
    points = []
    for angle in angles:
        for r, offset in ((radius, 0.0), (radius * (1 - spikiness), np.pi / vertices)):
            points.append((cx + r * np.cos(angle + offset), cy + r * np.sin(angle + offset)))
    return points


def border(label: np.ndarray, width: int) -> np.ndarray:
    """Object pixels within ``width`` of a change of label (VOC's void band)."""
    edge = np.zeros(label.shape, bool)
    padded = np.pad(label, 1, mode="edge")
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] != label
    for _ in range(width - 1):
        padded = np.pad(edge, 1)
        edge = edge | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return edge


def render(seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, H×W uint8 mask: 0 background, 1..20, 255 borders)."""
    rng = np.random.default_rng([seed, {"train": 1, "val": 2}[split], index])
    height, width = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    top, bottom = rng.uniform(90, 200, size=(2, 3))
    canvas = top + (bottom - top) * (yy / height)[..., None]
    classes = rng.choice(len(VOC_CLASSES), size=int(rng.choice([1, 2], p=[0.6, 0.4])), replace=False)
    if rng.random() < 0.8:  # the first object's context band, under it
        band_top = int(height * rng.uniform(0.55, 0.75))
        colour_a, colour_b = GROUP_CONTEXT[GROUP_OF[VOC_CLASSES[classes[0]]]]
        stripes = (np.mod(xx + 0.7 * yy, 8) < 4)[band_top:, :, None]
        canvas[band_top:] = np.where(stripes, colour_a, colour_b)
    label = np.zeros((height, width), np.uint8)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    short = min(height, width)
    for slot, cls in enumerate(classes):
        vertices, spikiness, stripe_a, stripe_b, angle = class_look(int(cls))
        radius = short * rng.uniform(0.2, 0.32)
        cx = width * ((slot + 0.5) / len(classes) + rng.uniform(-0.08, 0.08))
        cy = height * rng.uniform(0.4, 0.6)
        shape = Image.new("L", (width, height))
        ImageDraw.Draw(shape).polygon(polygon(rng, cy, cx, radius, vertices, spikiness), fill=1)
        body = np.asarray(shape, bool)
        colour = np.asarray(GROUP_COLOUR[GROUP_OF[VOC_CLASSES[cls]]]) + rng.normal(0, 8, 3)
        pixels = np.asarray(image).copy()
        pixels[body] = np.clip(colour + rng.normal(0, 6, (int(body.sum()), 3)), 0, 255)
        part_y, part_x = cy - radius * 0.35, cx + rng.uniform(-0.3, 0.3) * radius  # the part: upper disc
        part = body & ((yy - part_y) ** 2 + (xx - part_x) ** 2 < (radius * 0.38) ** 2)
        phase = np.cos(angle) * xx + np.sin(angle) * yy
        pixels[part] = np.where((np.mod(phase, 7) < 3.5)[part][:, None], stripe_a, stripe_b)
        image = Image.fromarray(pixels)
        label[body] = cls + 1
    pixels = np.clip(np.asarray(image, np.float64) + rng.normal(0, 5, (height, width, 3)), 0, 255)
    label[border(label, 2) & (label > 0)] = IGNORE_INDEX
    return pixels.astype(np.uint8), label


def write_polygon_voc(root: Path, num_train: int = 600, num_val: int = 150, seed: int = 0) -> Path:
    """The dataset in VOC's layout under ``root`` (written once: an existing complete root is kept)."""
    lists = root / "ImageSets" / "Segmentation"
    if (lists / "val.txt").is_file():
        return root
    for folder in ("JPEGImages", "SegmentationClassAug"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = {}
    for split, count in (("train", num_train), ("val", num_val)):
        names[split] = [f"{split}_{index:05d}" for index in range(count)]
        for index, name in enumerate(names[split]):
            image, label = render(seed, split, index)
            Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=92)
            write_label_png(root / "SegmentationClassAug" / f"{name}.png", label)
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train_aug.txt").write_text("\n".join(names["train"]) + "\n")
    (lists / "val.txt").write_text("\n".join(names["val"]) + "\n")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_polygon_voc(args.root, args.train, args.val, args.seed))


if __name__ == "__main__":
    main()

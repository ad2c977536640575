"""IRN's inter-pixel relations (Ahn, Cho & Kwak, CVPR 2019): a boundary network learned from confident seeds,
and the random walk on the affinities it gives (``refine.method: irn``).

- **Boundary branch** (:class:`BoundaryNetwork`): the five levels of a frozen ResNet (stem after max-pooling,
  layer1 … layer4), each through a 1×1 convolution to ``level_width`` channels, GroupNorm(4) and ReLU, resized
  to the grid of ``output_stride`` (IRN: 4), concatenated and fused by a 1×1 convolution into one logit;
  B = sigmoid. IRN freezes its backbone (BatchNorm statistics included); so does this.
- **Pair labels** (:func:`pair_labels`): seeds resized to the grid (nearest); for every pair (i, j) at an
  offset of :func:`pair_offsets` (radius 10 in training, each unordered pair once), both labelled: same class
  and background → positive background pair, same foreground class → positive foreground pair, different →
  negative; a pair with a 255 end is ignored. The sources are IRN's (``misc/indexing.py``,
  ``PathIndex.get_path_indices``): one window for every offset, rows [0, h − r_f) and columns [r_f, w − r_f)
  with r_f = radius − 1, so that every partner lies inside (:func:`source_window`): 141,360 pairs on a 40 × 48
  grid at radius 10, not every pair inside the grid (238,016).
- **Affinity** (:func:`pair_affinities`): a_ij = 1 − max_{k on the path i→j} B_k over IRN's path cells, the
  path maximum the walk also uses (:func:`pipeline.refine.affinity.segment_maxima`).
- **Loss** (:func:`affinity_loss`, IRN's): L = (L_bg⁺ / 2 + L_fg⁺ / 2 + L⁻) / 2 with L⁺ the mean of −log(a)
  over its positive pairs and L⁻ the mean of −log(1 − a) over the negatives (1e-5 inside the logs). IRN also
  learns displacement fields for instances; semantic pseudo labels do not use them, so they are left out.
- **Network order** (IRN's ``net/resnet50_irn.py``): each level's 1×1 convolution and GroupNorm, then the
  resize to the grid, then the ReLU (``fc_edge3``–``fc_edge5``: Upsample before ReLU).
- **Walk**: the boundary of the image and its flip (logits averaged, IRN's inference), the batch zero-padded at
  the right and bottom to the training crop (IRN's ``EdgeDisplacement``: 512) and the boundary cropped back to
  the image's grid, then the walk of :func:`pipeline.refine.affinity.walk_labels` on that grid: radius 5, β 10,
  2^8 steps, background pad 0.25. A side longer than the crop is not padded (IRN's ``F.pad`` would cut it).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbones import resnet_trunk
from pipeline.data.loading import to_tensor
from pipeline.params import IrnNetworkParams, IrnRefineParams
from pipeline.refine import REFINE_METHODS
from pipeline.refine.affinity import Window, segment_maxima, walk_labels
from pipeline.voc import IGNORE_INDEX

LOG_EPSILON = 1e-5
CPU = torch.device("cpu")


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with 0 < |(dy, dx)| < radius in one half-plane (dy > 0, or dy = 0 and dx > 0): each
    unordered pair of grid cells once (IRN's search directions)."""
    return [(dy, dx) for dy in range(radius) for dx in range(-radius + 1, radius)
            if (dy > 0 or dx > 0) and dy * dy + dx * dx < radius * radius]  # fmt: skip


def source_window(height: int, width: int, radius: int) -> Window:
    """IRN's training sources on an h × w grid: rows [0, h − r_f), columns [r_f, w − r_f), r_f = radius − 1,
    the same for every offset of :func:`pair_offsets` (each partner then lies inside)."""
    reach = radius - 1
    return (0, max(0, height - reach)), (reach, max(reach, width - reach))


def pair_affinities(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, P): a_ij = 1 − max boundary on the segment i→j, for IRN's training pairs within ``radius`` of the
    (B, h, w) grid (sources of :func:`source_window` in row-major order, offsets in :func:`pair_offsets` order)."""
    window = source_window(*boundary.shape[-2:], radius)
    parts = [segment_maxima(boundary, dy, dx, window).flatten(1) for dy, dx in pair_offsets(radius)]
    return 1.0 - torch.cat(parts, dim=1)


def pair_labels(seeds: torch.Tensor, radius: int) -> dict[str, torch.Tensor]:
    """(B, P) masks ``bg_pos``, ``fg_pos``, ``neg`` of the pairs of :func:`pair_affinities` from (B, h, w) seeds
    (0 background, c + 1 class c, 255 ignored)."""
    (y0, y1), (x0, x1) = source_window(*seeds.shape[-2:], radius)
    first, second = [], []
    for dy, dx in pair_offsets(radius):
        first.append(seeds[:, y0:y1, x0:x1].flatten(1))
        second.append(seeds[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx].flatten(1))
    a, b = torch.cat(first, dim=1), torch.cat(second, dim=1)
    known = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
    same = known & (a == b)
    return {"bg_pos": same & (a == 0), "fg_pos": same & (a > 0), "neg": known & (a != b)}


def affinity_loss(affinity: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """IRN's loss, as its three weighted terms (they sum to (L_bg⁺ / 2 + L_fg⁺ / 2 + L⁻) / 2)."""

    def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum() / (mask.sum() + LOG_EPSILON)

    positive = -torch.log(affinity + LOG_EPSILON)
    negative = -torch.log(1.0 + LOG_EPSILON - affinity)
    return {"affinity_bg_pos": masked_mean(positive, labels["bg_pos"]) / 4,
            "affinity_fg_pos": masked_mean(positive, labels["fg_pos"]) / 4,
            "affinity_neg": masked_mean(negative, labels["neg"]) / 2}  # fmt: skip


def grid_labels(seeds: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, ⌈H/s⌉, ⌈W/s⌉) seeds at the boundary grid: the label at each cell's centre (nearest)."""
    if stride == 1:
        return seeds
    height, width = seeds.shape[-2:]
    rows = torch.clamp(torch.arange(0, height, stride) + stride // 2, max=height - 1)
    cols = torch.clamp(torch.arange(0, width, stride) + stride // 2, max=width - 1)
    return seeds[:, rows][:, :, cols]


class BoundaryNetwork(nn.Module):
    """``forward(images)``: (B, 1, ⌈H/s⌉, ⌈W/s⌉) boundary logits from a frozen ResNet trunk's five levels."""

    def __init__(self, trunk: nn.Sequential, params: IrnNetworkParams) -> None:
        super().__init__()
        self.trunk = trunk.requires_grad_(False)
        self.output_stride = params.output_stride
        with torch.no_grad():
            channels = [level.shape[1] for level in self.levels(torch.zeros(1, 3, 32, 32))]
        width = params.level_width
        self.branches = nn.ModuleList(  # the ReLU follows the resize (forward)
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.GroupNorm(4, width)) for c in channels
        )
        self.fuse = nn.Conv2d(width * len(channels), 1, kernel_size=1)

    def train(self, mode: bool = True) -> BoundaryNetwork:
        super().train(mode)
        self.trunk.eval()  # frozen, BatchNorm statistics included (IRN)
        return self

    def levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's stem (after max-pooling) and its four stages."""
        stem, stages = self.trunk[:4], list(self.trunk)[4:]
        x = stem(images)
        out = [x]
        for stage in stages:
            x = stage(x)
            out.append(x)
        return [level.detach() for level in out]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(-(-side // self.output_stride) for side in images.shape[-2:])
        fused = [F.relu(F.interpolate(branch(level), size=size, mode="bilinear", align_corners=False))
                 for branch, level in zip(self.branches, self.levels(images), strict=True)]  # fmt: skip
        return self.fuse(torch.cat(fused, dim=1))

    def training_step(self, images: torch.Tensor, seeds: torch.Tensor, radius: int) -> dict[str, torch.Tensor]:
        """IRN's affinity loss on the pairs within ``radius`` cells, labelled by the seeds."""
        boundary = torch.sigmoid(self(images))[:, 0]
        labels = pair_labels(grid_labels(seeds, self.output_stride), radius)
        return affinity_loss(pair_affinities(boundary, radius), labels)


def build_boundary_network(arch: str, trunk_stride: int, params: IrnNetworkParams) -> BoundaryNetwork:
    """A boundary network on an untrained ResNet trunk of ``arch`` (weights are loaded after)."""
    return BoundaryNetwork(resnet_trunk(arch, "none", trunk_stride)[0], params)


@torch.no_grad()
def predict_boundary(network: BoundaryNetwork, image: torch.Tensor, pad_to: int) -> np.ndarray:  # on its device
    """(⌈H/s⌉, ⌈W/s⌉) boundary of a normalised (3, H, W) image: the image and its flip zero-padded at the right
    and bottom to ``pad_to`` (IRN: its 512 crop), their logits cropped to the image's grid and averaged."""
    height, width = image.shape[-2:]
    device = next(network.parameters(), torch.empty(0)).device
    batch = torch.stack([image, image.flip(-1)]).to(device)
    batch = F.pad(batch, (0, max(0, pad_to - width), 0, max(0, pad_to - height)))
    grid = (-(-height // network.output_stride), -(-width // network.output_stride))
    logits = network(batch)[:, 0, : grid[0], : grid[1]]
    return torch.sigmoid((logits[0] + logits[1].flip(-1)) / 2).double().cpu().numpy()


@lru_cache(maxsize=2)
def load_boundary_network(path: Path, device: torch.device = CPU) -> tuple[BoundaryNetwork, tuple]:
    """The trained network of ``train_irn`` on ``device`` (once per process and device) and the input
    normalisation it was trained with."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: IRN boundary network not found (run train_irn)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("method") != "irn":
        raise ValueError(f"{path}: no IRN boundary network in it (trained with refine.method other than irn)")
    network = build_boundary_network(state["arch"], state["trunk_stride"], IrnNetworkParams(**state["network"]))
    network.load_state_dict(state["state_dict"])
    return network.to(device).eval(), (tuple(state["mean"]), tuple(state["std"]))


@REFINE_METHODS.register("irn")
def irn_refine(image: np.ndarray, seeds: np.ndarray, cams: np.ndarray, classes: list[int],
               params: IrnRefineParams, model: Path, device: torch.device = CPU) -> np.ndarray:  # fmt: skip
    """IRN's random-walk labels from the CAMs and the learned boundaries of the network in ``model``, which runs
    on ``device`` (the walk itself is sparse, on the CPU)."""
    if not classes:  # an image kept as a negative: nothing to walk
        return np.zeros(image.shape[:2], dtype=np.uint8)
    network, normalisation = load_boundary_network(Path(model), device)
    boundary = predict_boundary(network, to_tensor(image, normalisation), params.training.crop_size)
    return walk_labels(cams, classes, boundary, network.output_stride, params.walk)

"""IRN (pipeline/refine/irn.py): pair labels, path-maximum affinities, the loss, the network and its walk."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backbones import resnet_trunk
from pipeline.io import write_torch
from pipeline.params import IrnNetworkParams, IrnRefineParams
from pipeline.refine import REFINE_METHODS
from pipeline.refine.irn import (
    BoundaryNetwork,
    affinity_loss,
    grid_labels,
    load_boundary_network,
    pair_affinities,
    pair_labels,
    pair_offsets,
)


def test_pair_offsets_cover_each_unordered_pair_once() -> None:
    offsets = pair_offsets(3)
    assert offsets == [
        (0, 1),
        (0, 2),
        (1, -2),
        (1, -1),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, -2),
        (2, -1),
        (2, 0),
        (2, 1),
        (2, 2),
    ]  # dy² + dx² < 9
    assert not {(-dy, -dx) for dy, dx in offsets} & set(offsets)


def test_affinity_is_one_minus_the_path_maximum() -> None:
    boundary = torch.tensor([[[0.0, 0.2, 1.0, 0.1, 0.0]]])
    # One row: only the horizontal offsets (0, 1) and (0, 2) have pairs; each segment includes both ends.
    affinity = pair_affinities(boundary, [(0, 1), (0, 2)])
    assert torch.allclose(affinity, torch.tensor([[0.8, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0]]))
    # A diagonal pair's path passes the cell between its ends.
    grid = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.0]]])
    assert pair_affinities(grid, [(2, 2)]).tolist() == [[pytest.approx(0.3)]]


def test_pair_labels_from_seeds_within_the_radius_and_ignoring_uncertain_ends() -> None:
    seeds = torch.tensor([[[0, 0, 2], [1, 1, 255]]])
    offsets = [(0, 1), (1, 0)]  # sources: (0,0) (0,1) (1,0) (1,1) for (0, 1); (0,0) (0,1) (0,2) for (1, 0)
    labels = pair_labels(seeds, offsets)
    assert labels["bg_pos"].tolist() == [[True, False, False, False, False, False, False]]
    assert labels["fg_pos"].tolist() == [[False, False, True, False, False, False, False]]
    assert labels["neg"].tolist() == [[False, True, False, False, True, True, False]]  # (0,2)→(1,2) is 255


def test_loss_is_irns_weighting_of_the_three_pair_kinds() -> None:
    affinity = torch.tensor([[0.5, 0.9, 0.2, 0.4]])
    labels = {"bg_pos": torch.tensor([[True, False, False, False]]),
              "fg_pos": torch.tensor([[False, True, False, False]]),
              "neg": torch.tensor([[False, False, True, True]])}  # fmt: skip
    terms = affinity_loss(affinity, labels)
    bg, fg = -math.log(0.5 + 1e-5), -math.log(0.9 + 1e-5)
    neg = (-math.log(1 + 1e-5 - 0.2) - math.log(1 + 1e-5 - 0.4)) / 2
    assert terms["affinity_bg_pos"].item() == pytest.approx(bg / (1 + 1e-5) / 4, rel=1e-5)
    assert terms["affinity_fg_pos"].item() == pytest.approx(fg / (1 + 1e-5) / 4, rel=1e-5)
    assert terms["affinity_neg"].item() == pytest.approx(neg * 2 / (2 + 1e-5) / 2, rel=1e-5)
    empty = {k: torch.zeros_like(v) for k, v in labels.items()}  # no labelled pair: zero, not NaN
    assert sum(affinity_loss(affinity, empty).values()).item() == 0.0


def test_grid_labels_take_each_cells_centre() -> None:
    seeds = torch.arange(25).reshape(1, 5, 5)
    assert grid_labels(seeds, 2).tolist() == [[[6, 8, 9], [16, 18, 19], [21, 23, 24]]]


def tiny_network(output_stride: int = 4) -> BoundaryNetwork:
    torch.manual_seed(0)
    return BoundaryNetwork(resnet_trunk("resnet10", "none", 16)[0], IrnNetworkParams(output_stride=output_stride,
                                                                                     level_width=8))  # fmt: skip


def test_boundary_network_trains_its_branch_on_a_frozen_trunk() -> None:
    network = tiny_network().train()
    assert not network.trunk.training and all(not p.requires_grad for p in network.trunk.parameters())
    assert network(torch.zeros(2, 3, 37, 50)).shape == (2, 1, 10, 13)
    trunk = {k: v.clone() for k, v in network.trunk.state_dict().items()}
    seeds = torch.zeros(2, 40, 40, dtype=torch.long)
    seeds[:, :, 20:] = 1
    losses = network.training_step(torch.randn(2, 3, 40, 40), seeds, radius=4)
    assert losses["affinity_neg"] > 0 and losses["affinity_fg_pos"] > 0
    sum(losses.values()).backward()
    assert network.fuse.weight.grad is not None and network.branches[0][0].weight.grad.abs().sum() > 0
    assert all(torch.equal(v, network.trunk.state_dict()[k]) for k, v in trunk.items())  # BatchNorm stats too


def test_irn_refine_walks_the_cams_on_the_saved_networks_boundaries(tmp_path: Path) -> None:
    network = tiny_network(output_stride=2)
    with torch.no_grad():  # a boundary between every pair of cells: the walk keeps the CAM where it is
        network.fuse.weight.zero_()
        network.fuse.bias.fill_(4.0)
    path = tmp_path / "model.pt"
    write_torch(path, {"method": "irn", "arch": "resnet10", "trunk_stride": 16,
                       "network": IrnNetworkParams(output_stride=2, level_width=8).model_dump(mode="json"),
                       "mean": [0.5] * 3, "std": [0.25] * 3, "state_dict": network.state_dict()})  # fmt: skip
    loaded, normalisation = load_boundary_network(path)
    assert normalisation == ((0.5,) * 3, (0.25,) * 3) and loaded.output_stride == 2
    cams = np.zeros((1, 16, 16))
    cams[0, :, 8:] = 1.0
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    labels = REFINE_METHODS.get("irn")(image, np.zeros((16, 16), np.uint8), cams, [4], IrnRefineParams(), model=path)
    assert labels.shape == (16, 16) and set(labels[:, :6].ravel()) == {0} and set(labels[:, 10:].ravel()) == {5}


def test_a_placeholder_model_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "placeholder.pt"
    write_torch(path, {"method": "none"})
    with pytest.raises(ValueError, match="placeholder.pt"):
        load_boundary_network(path)


def test_irn_on_a_voc_sized_image_walks_at_stride_4_and_keeps_its_size(tmp_path: Path) -> None:
    network = tiny_network(output_stride=4)
    path = tmp_path / "model.pt"
    write_torch(path, {"method": "irn", "arch": "resnet10", "trunk_stride": 16,
                       "network": IrnNetworkParams(output_stride=4, level_width=8).model_dump(mode="json"),
                       "mean": [0.5] * 3, "std": [0.25] * 3, "state_dict": network.state_dict()})  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    cams = np.zeros((2, 375, 500))
    cams[0, :100, :100], cams[1, 200:, 300:] = 1.0, 0.8
    labels = REFINE_METHODS.get("irn")(image, np.zeros((375, 500), np.uint8), cams, [2, 7], IrnRefineParams(),
                                       model=path)  # fmt: skip
    assert labels.shape == (375, 500) and set(np.unique(labels)) <= {0, 3, 8}
    assert labels[50, 50] == 3 and labels[300, 400] == 8

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
from pipeline.refine.affinity import affinity_matrix, grid_cams, path_cells
from pipeline.refine.irn import (
    BoundaryNetwork,
    affinity_loss,
    grid_labels,
    load_boundary_network,
    pair_affinities,
    pair_labels,
    pair_offsets,
    predict_boundary,
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


def test_affinity_is_one_minus_the_path_maximum_from_irns_sources() -> None:
    # Radius 2 on a 2 × 3 grid: IRN's one source (0, 1) (rows [0, 1), columns [1, 2)) and its partners at
    # (0, 1), (1, -1), (1, 0), (1, 1); each path includes both ends, a diagonal step all four cells (IRN's).
    boundary = torch.tensor([[[0.0, 0.1, 0.2], [0.3, 0.4, 0.5]]])
    affinity = pair_affinities(boundary, radius=2)
    assert torch.allclose(affinity, torch.tensor([[0.8, 0.6, 0.6, 0.5]]))
    # A diagonal pair's path passes the cell between its ends (radius 3 on a 3 × 5 grid: source (0, 2)).
    grid = torch.zeros(1, 3, 5)
    grid[0, 1, 3] = 0.7
    offsets = pair_offsets(3)
    assert pair_affinities(grid, radius=3)[0, offsets.index((2, 2))].item() == pytest.approx(0.3)


def test_paths_are_the_cells_within_one_of_the_segment_as_irns_path_index() -> None:
    assert sorted(path_cells(1, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # the rounded line took 2
    assert sorted(path_cells(0, 3)) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert sorted(path_cells(2, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]  # (2x − y)² < 5
    assert sorted(path_cells(-2, -1)) == sorted((-y, -x) for y, x in path_cells(2, 1))  # the way back
    cells = [len(path_cells(dy, dx)) for dy, dx in pair_offsets(10)]
    assert 13 < sum(cells) / len(cells) < 15  # IRN: about 14 cells a path at radius 10


def test_a_one_cell_diagonal_wall_stops_the_walk_and_affinities_are_symmetric() -> None:
    wall = np.eye(4)  # boundary 1 on the diagonal cells (k, k)
    affinity = affinity_matrix(wall, radius=2, beta=1.0).toarray()
    across = affinity[1 * 4 + 0, 0 * 4 + 1]  # (1, 0) → (0, 1) crosses the wall between (0, 0) and (1, 1)
    assert across == 0.0  # the two-cell line leaked: affinity 1
    random = np.random.default_rng(0).random((9, 11))
    dense = affinity_matrix(random, radius=5, beta=10.0).toarray()
    assert np.abs(dense - dense.T).max() == 0.0  # was up to 0.70 with the rounded line


def test_training_pairs_are_irns_cropped_sources() -> None:
    """IRN's PathIndex at radius 10 on a 40 × 48 grid: 31 × 30 sources × 152 offsets = 141,360 pairs (every pair
    inside the grid would be 238,016)."""
    assert len(pair_offsets(10)) == 152
    assert pair_affinities(torch.rand(1, 40, 48), radius=10).shape == (1, 141_360)
    assert pair_labels(torch.zeros(1, 40, 48, dtype=torch.long), radius=10)["bg_pos"].shape == (1, 141_360)
    assert pair_affinities(torch.rand(1, 128, 128), radius=10).shape == (1, (128 - 9) * (128 - 18) * 152)


def test_pair_labels_from_seeds_within_the_radius_and_ignoring_uncertain_ends() -> None:
    seeds = torch.tensor([[[0, 0, 2], [1, 1, 255]]])
    labels = pair_labels(seeds, radius=2)  # source (0, 1) = 0; partners (0, 2) = 2, (1, 0) = 1, (1, 1) = 1, 255
    assert labels["bg_pos"].tolist() == [[False, False, False, False]]
    assert labels["neg"].tolist() == [[True, True, True, False]]
    labels = pair_labels(torch.tensor([[[1, 1, 1], [0, 1, 1]]]), radius=2)
    assert labels["fg_pos"].tolist() == [[True, False, True, True]]
    assert labels["neg"].tolist() == [[False, True, False, False]]


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


def test_each_level_is_resized_before_its_relu() -> None:
    """IRN's fc_edge3–5: Conv, GroupNorm, Upsample, then ReLU. A level whose branch gives (−1, 1) across two
    cells, resized to four: (−1, −0.5, 0.5, 1), then ReLU (0, 0, 0.5, 1); ReLU first would give (0, 0.25, 0.75, 1)."""
    network = BoundaryNetwork(resnet_trunk("resnet10", "none", 16)[0], IrnNetworkParams(output_stride=4, level_width=4))
    network.eval()
    with torch.no_grad():
        for branch in network.branches:
            branch[0].weight.zero_()
        network.branches[0][0].weight[0, 0] = 1.0  # branch 0, channel 0 ← the level's channel 0
        network.fuse.weight.zero_()
        network.fuse.bias.zero_()
        network.fuse.weight[0, 0] = 1.0  # the output is branch 0's channel 0
    level = torch.zeros(1, network.branches[0][0].in_channels, 1, 2)
    level[0, 0, 0] = torch.tensor([-1.0, 1.0])  # GroupNorm(4, 4), a group per channel: (−1, 1) stays (up to ε)
    others = [torch.zeros(1, b[0].in_channels, 1, 2) for b in network.branches[1:]]
    network.levels = lambda images: [level, *others]
    out = network(torch.zeros(1, 3, 4, 16))[0, 0, 0] * math.sqrt(1 + 1e-5)
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 0.5, 1.0]), atol=1e-5)


def test_the_boundary_is_predicted_on_the_image_padded_to_the_crop() -> None:
    """IRN's EdgeDisplacement pads the image and its flip at the right and bottom to its 512 crop, then crops
    the boundary to the image's grid."""
    seen = []

    class Recorder(torch.nn.Module):
        output_stride = 4

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            seen.append(batch)
            return torch.zeros(batch.shape[0], 1, -(-batch.shape[2] // 4), -(-batch.shape[3] // 4))

    image = torch.ones(3, 375, 500)
    boundary = predict_boundary(Recorder(), image, pad_to=512)
    (batch,) = seen
    assert batch.shape == (2, 3, 512, 512) and boundary.shape == (94, 125)
    assert batch[0, :, :375, :500].eq(1).all() and batch[:, :, 375:].eq(0).all() and batch[:, :, :, 500:].eq(0).all()
    assert predict_boundary(Recorder(), torch.ones(3, 600, 500), pad_to=512).shape == (150, 125)  # not cut
    assert seen[-1].shape == (2, 3, 600, 512)


def test_the_walk_starts_from_the_cams_resized_to_the_grid() -> None:
    """IRN resizes its CAM straight (bilinearly) to the stride-4 grid: on an 8 × 8 map, grid cell (0, 0) samples
    the pixels' half-pixel position (1.5, 1.5), the mean of pixels (1, 1), (1, 2), (2, 1), (2, 2), where average
    pooling took the mean of the 16 pixels of rows and columns 0–3."""
    cams = np.zeros((2, 8, 8))
    cams[0, 0, 0] = 1.0  # outside the sampled pixels: 0 (average pooling: 1/16)
    cams[1, 1, 1] = 1.0  # one of the four: 1/4 (average pooling: 1/16)
    small = grid_cams(cams, (2, 2))
    assert small[0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert small[1].tolist() == [[0.25, 0.0], [0.0, 0.0]]
    assert np.allclose(grid_cams(cams, (8, 8)), cams)  # stride 1: the maps themselves


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


def test_the_boundary_network_runs_on_the_refine_stages_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IRN's walk loads the network on the device it is given (the refine job's, resolved in each worker) and
    moves each image to it; on this CPU-only machine, a spy on where the network is put."""
    from pipeline.refine import irn as irn_module

    path = tmp_path / "model.pt"
    write_torch(path, {"method": "irn", "arch": "resnet10", "trunk_stride": 16,
                       "network": IrnNetworkParams(output_stride=2, level_width=8).model_dump(mode="json"),
                       "mean": [0.5] * 3, "std": [0.25] * 3, "state_dict": tiny_network(2).state_dict()})  # fmt: skip
    placed = []
    original = BoundaryNetwork.to
    monkeypatch.setattr(BoundaryNetwork, "to", lambda self, device: placed.append(device) or original(self, device))
    irn_module.load_boundary_network.cache_clear()
    cams = np.zeros((1, 16, 16))
    REFINE_METHODS.get("irn")(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.uint8), cams, [0],
                              IrnRefineParams(), model=path, device=torch.device("cpu"))  # fmt: skip
    assert placed == [torch.device("cpu")]


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

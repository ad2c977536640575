"""Random-walk refinement of CAMs in the style of IRN (Ahn et al., 2019), with image-derived boundaries.

Where the affinities come from: IRN learns a class boundary map B from the CAMs; here B is the image's own
edge strength — per-channel Sobel magnitude of the Gaussian-smoothed (``edge_sigma``) image, max over
channels, divided by its 99th percentile and clipped to [0, 1] — then max-pooled to the walk's ``stride``.
From there the steps are IRN's:

- affinity a_ij = 1 − max_{k on the path i→j} B_k for pixels within ``radius`` (a_ii = 1), the path being
  IRN's (``misc/indexing.py``, ``PathIndex.get_all_dir_paths``): every cell of the pair's bounding box whose
  distance to the segment is below one cell (:func:`path_cells`; 4 cells for a diagonal step, ~14 at radius
  10), so a one-cell diagonal wall stops the walk and a_ij = a_ji;
- transition T = A^β / column sums (β = ``beta``), walked 2^``log_t`` steps: v ← v T;
- v₀ = CAM resized bilinearly to the grid ⊙ (1 − B) (:func:`grid_cams`); the result is upsampled bilinearly
  to the image, divided by its global max, a constant background ``bg_pad`` is prepended and the argmax is
  the label.

No 255: every pixel gets a label, as in IRN's semantic-segmentation pseudo labels.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import torch
import torch.nn.functional as F
from skimage.filters import gaussian, sobel

from pipeline.params import AffinityRefineParams
from pipeline.refine import REFINE_METHODS


def boundary_map(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) edge strength in [0, 1] from the RGB image."""
    smooth = gaussian(image.astype(np.float64) / 255.0, sigma=sigma, channel_axis=-1) if sigma > 0 else image / 255.0
    edges = np.max([sobel(smooth[..., c]) for c in range(smooth.shape[-1])], axis=0)
    scale = np.percentile(edges, 99)
    return np.clip(edges / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(edges)


def path_offsets(radius: int) -> list[tuple[int, int]]:
    """Neighbour offsets (dy, dx) with 0 < |(dy, dx)| < radius."""
    return [(dy, dx) for dy in range(-radius + 1, radius) for dx in range(-radius + 1, radius)
            if 0 < dy * dy + dx * dx < radius * radius]  # fmt: skip


Window = tuple[tuple[int, int], tuple[int, int]]


def path_cells(dy: int, dx: int) -> list[tuple[int, int]]:
    """IRN's path from a cell to the cell at (dy, dx): the offsets (y, x) of the bounding box whose squared
    distance to the segment, (dy·x − dx·y)² / (dy² + dx²), is below 1 (both ends included). The rule is
    symmetric: the path back is the same cells seen from the other end."""
    length = dy * dy + dx * dx
    return [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
            if (dy * x - dx * y) ** 2 < length]  # fmt: skip


def segment_maxima(boundary, dy: int, dx: int, window: Window | None = None):
    """max B on IRN's path i → i + (dy, dx) (:func:`path_cells`) for the sources i of ``window`` ((y0, y1),
    (x0, x1)) — by default every source whose partner is inside the last two axes (:func:`offset_window`):
    (..., h', w'); numpy arrays or torch tensors."""
    maximum = torch.maximum if isinstance(boundary, torch.Tensor) else np.maximum
    (y0, y1), (x0, x1) = window or offset_window(*boundary.shape[-2:], dy, dx)
    worst = boundary[..., y0:y1, x0:x1]
    for py, px in path_cells(dy, dx):
        worst = maximum(worst, boundary[..., y0 + py : y1 + py, x0 + px : x1 + px])
    return worst


def offset_window(height: int, width: int, dy: int, dx: int) -> Window:
    """((y0, y1), (x0, x1)): the sources whose partner at (dy, dx) lies inside an h × w grid (may be empty)."""
    return (max(0, -dy), min(height, height - dy)), (max(0, -dx), min(width, width - dx))


def affinity_matrix(boundary: np.ndarray, radius: int, beta: float) -> sparse.csr_matrix:
    """(N, N) A^β with a_ij = 1 − max boundary on the segment from i to j (a_ii = 1), N = h·w."""
    height, width = boundary.shape
    index = np.arange(height * width).reshape(height, width)
    rows, cols, values = [index.ravel()], [index.ravel()], [np.ones(height * width)]
    for dy, dx in path_offsets(radius):
        (y0, y1), (x0, x1) = offset_window(height, width, dy, dx)
        if y0 >= y1 or x0 >= x1:
            continue
        rows.append(index[y0:y1, x0:x1].ravel())
        cols.append(index[y0 + dy : y1 + dy, x0 + dx : x1 + dx].ravel())
        values.append(np.power(1.0 - segment_maxima(boundary, dy, dx).ravel(), beta))
    n = height * width
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def random_walk(values: np.ndarray, affinity: sparse.csr_matrix, log_t: int) -> np.ndarray:
    """(C, N) values after 2^log_t steps v ← v T with T = A / column sums."""
    column_sums = np.asarray(affinity.sum(axis=0)).ravel()
    transition_t = (affinity @ sparse.diags(1.0 / np.maximum(column_sums, 1e-12))).T.tocsr()
    walked = values.T.astype(np.float64)
    for _ in range(2**log_t):
        walked = transition_t @ walked
    return walked.T


def walk_stride(params: AffinityRefineParams, height: int, width: int) -> int:
    """The walk's stride for an image: ``stride`` × √(H·W) / ``reference_size`` rounded (at least 1)."""
    if params.reference_size is None:
        return params.stride
    return max(1, round(params.stride * (height * width) ** 0.5 / params.reference_size))


def grid_cams(cams: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(C, h, w) CAMs at the walk's grid: the (C, H, W) maps resized bilinearly (half-pixel centres, no
    averaging), as IRN's ``make_cam.py`` resizes its stride-16 CAMs straight to the stride-4 grid; sampling the
    image-size maps (themselves bilinear from the network's grid) at the cells' centres gives the same maps."""
    return F.interpolate(torch.from_numpy(cams)[None], size=grid, mode="bilinear", align_corners=False)[0].numpy()


def walk_labels(cams: np.ndarray, classes: list[int], boundary: np.ndarray, stride: int, walk) -> np.ndarray:
    """IRN's walk from the CAMs on a boundary grid (⌈H/stride⌉ × ⌈W/stride⌉): v₀ = CAM at the grid ⊙ (1 − B),
    2^log_t steps on A^β (radius, β of ``walk``), upsampled, divided by its max, background pad, argmax."""
    height, width = cams.shape[-2:]
    start = grid_cams(cams, boundary.shape) * (1.0 - boundary)[None]
    affinity = affinity_matrix(boundary, walk.radius, walk.beta)
    walked = random_walk(start.reshape(len(cams), -1), affinity, walk.log_t).reshape(start.shape)
    upsampled = F.interpolate(torch.from_numpy(walked)[None], scale_factor=stride, mode="bilinear",
                              align_corners=False)[0, :, :height, :width].numpy()  # fmt: skip
    upsampled = upsampled / max(float(upsampled.max()), 1e-12)
    scores = np.concatenate([np.full((1, height, width), walk.bg_pad), upsampled])
    values = np.asarray([0] + [c + 1 for c in classes], dtype=np.uint8)
    return values[scores.argmax(axis=0)]


@REFINE_METHODS.register("affinity")
def affinity_refine(
    image: np.ndarray, seeds: np.ndarray, cams: np.ndarray, classes: list[int], params: AffinityRefineParams
) -> np.ndarray:  # fmt: skip
    """IRN-style random-walk labels from the CAMs and the image's boundaries."""
    height, width = image.shape[:2]
    if not classes:  # an image kept as a negative: nothing to walk
        return np.zeros((height, width), dtype=np.uint8)
    stride = walk_stride(params, height, width)
    boundary = torch.from_numpy(boundary_map(image, params.edge_sigma))[None, None]
    small_boundary = F.max_pool2d(boundary, stride, ceil_mode=True)[0, 0].numpy()
    return walk_labels(cams, classes, small_boundary, stride, params)

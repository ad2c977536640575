"""Class-aware attention-based affinity (CLIP-ES; eq. 4 of the FMA-WSSS paper): M^c* = B^c ⊙ A^t · vec(M^c).

- :func:`affinity`: A from the attention weights of the last ``blocks`` blocks (patch to patch, averaged),
  Sinkhorn-normalised (columns then rows, ``rounds`` times), symmetrised (A + Aᵀ)/2, raised to the power t;
- :func:`box_mask`: B^c, the union of the bounding boxes of the connected regions where the CAM exceeds
  ``threshold`` × its max (CLIP-ES takes the boxes of OpenCV's contours of that mask; a region's contour
  and its connected component have the same box);
- :func:`refine`: B^c multiplies the affinity's columns, the product with vec(M^c) is min-max normalised.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def sinkhorn(matrix: torch.Tensor, rounds: int) -> torch.Tensor:
    """Alternately divide by column sums and row sums, ``rounds`` times each."""
    for _ in range(rounds):
        matrix = matrix / matrix.sum(dim=0, keepdim=True).clamp(min=1e-12)
        matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return matrix


def affinity(attentions: list[torch.Tensor], blocks: int, rounds: int, power: int) -> torch.Tensor:
    """A (N, N) from per-block (N, N) patch-to-patch attention weights (see module docstring)."""
    attention = torch.stack(attentions[-blocks:]).mean(dim=0)
    normalised = sinkhorn(attention, rounds)
    symmetric = (normalised + normalised.T) / 2
    return torch.linalg.matrix_power(symmetric, power)


def box_mask(cam: torch.Tensor, threshold: float) -> torch.Tensor:
    """B^c (h, w): 1 inside the bounding box of every connected region of ``cam ≥ threshold · max``."""
    above = (cam >= threshold * cam.max()).cpu().numpy() if float(cam.max()) > 0 else np.zeros(cam.shape, bool)
    mask = np.zeros(cam.shape, dtype=np.float32)
    labels, _ = ndimage.label(above)
    for box in ndimage.find_objects(labels):
        mask[box] = 1.0
    return torch.from_numpy(mask).to(cam.device)


def refine(cam: torch.Tensor, affinity_matrix: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 4: M* (h, w) = (A with its columns masked by B) · vec(M), min-max normalised."""
    mask = box_mask(cam, threshold).flatten()
    refined = (affinity_matrix * mask[None, :]) @ cam.flatten()
    refined = refined - refined.min()
    return (refined / refined.max().clamp(min=1e-12)).reshape(cam.shape)

"""Class-aware attention-based affinity (CLIP-ES; eq. 4 of the FMA-WSSS paper): M^c* = B^c ⊙ A^t · vec(M^c).

- :func:`affinity`: A from the attention weights of the last ``blocks`` blocks (patch to patch, averaged),
  Sinkhorn-normalised (columns then rows, ``rounds`` times), symmetrised (A + Aᵀ)/2, raised to the power t;
- :func:`box_mask`: B^c, the union of the bounding boxes of the regions where the CAM exceeds ``threshold`` ×
  its max, as CLIP-ES's ``scoremap2bbox`` computes them: the map as uint8, OpenCV's threshold (strictly above)
  and contours (8-connected: a diagonal pair of cells is one region), each box's end clamped to W − 1 / H − 1
  and sliced with an exclusive end, so the last patch row and column are never in the mask (the paper says
  nothing of either; this is what its code ran);
- :func:`refine`: B^c multiplies the affinity's columns, the product with vec(M^c) is min-max normalised.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


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
    """B^c (h, w) of a map in [0, 1]: 1 inside the clamped bounding box of every OpenCV contour of
    ``uint8(255 · cam) > int(threshold · its max)``."""
    scores = (cam.detach().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    height, width = scores.shape
    _, above = cv2.threshold(scores, int(threshold * int(scores.max())), 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(above, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros(cam.shape, dtype=np.float32)
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        mask[y : min(y + h, height - 1), x : min(x + w, width - 1)] = 1.0
    return torch.from_numpy(mask).to(cam.device)


def refine(cam: torch.Tensor, affinity_matrix: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 4: M* (h, w) = (A with its columns masked by B) · vec(M), min-max normalised."""
    mask = box_mask(cam, threshold).flatten()
    refined = (affinity_matrix * mask[None, :]) @ cam.flatten()
    refined = refined - refined.min()
    return (refined / refined.max().clamp(min=1e-12)).reshape(cam.shape)

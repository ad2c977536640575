"""PCC's cluster vector and cluster token (eq. 1), from the vocab stage's ``clusters.json``.

An image belongs to every cluster that holds one of its labelled classes: u_i = 1 when some class of the image
is a member of cluster i (a class may sit in several clusters; clusters.json's ``membership``). The image
labels are known wherever PCC makes CAMs — the training split it makes pseudo labels for, and the image-level
labels the extraction stage already reads for every split — so u is built the same way in training and at
inference. The learnable G (L × H) maps u to the cluster token F_c = uᵀG (eq. 1), concatenated to every patch
token. G starts from N(0, 0.02), the initialisation ViTs give their class and position tokens; the paper does
not say.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def membership_matrix(path: Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(C, L) 0/1 matrix of which cluster each class belongs to, and the cluster names (sorted)."""
    membership = json.loads(Path(path).read_text()).get("membership")
    if not isinstance(membership, dict):
        raise ValueError(f"{path}: no 'membership' mapping (class → clusters); rerun the vocab stage")
    missing = [name for name in class_names if not membership.get(name)]
    if missing:
        raise ValueError(f"{path}: classes without a cluster: {missing}")
    clusters = tuple(sorted({cluster for name in class_names for cluster in membership[name]}))
    matrix = torch.zeros(len(class_names), len(clusters))
    for row, name in enumerate(class_names):
        for cluster in membership[name]:
            matrix[row, clusters.index(cluster)] = 1.0
    return matrix, clusters


class ClusterToken(nn.Module):
    """Cluster vectors u (B, L) → cluster tokens F_c = uᵀG (B, H) (eq. 1); u from image labels (B, C)."""

    def __init__(self, membership: torch.Tensor, width: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.register_buffer("membership", membership.float(), persistent=False)
        self.mapping = nn.Parameter(torch.randn(membership.shape[1], width) * init_std)  # G

    def cluster_vectors(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels.float() @ self.membership > 0).float()

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ self.mapping


def with_cluster_token(tokens: torch.Tensor, cluster_token: torch.Tensor) -> torch.Tensor:
    """(B, H, W, e) patch tokens ‖ the image's (B, h) cluster token on every patch → (B, H, W, e + h)."""
    b, h, w, _ = tokens.shape
    return torch.cat([tokens, cluster_token[:, None, None, :].expand(b, h, w, -1)], dim=-1)

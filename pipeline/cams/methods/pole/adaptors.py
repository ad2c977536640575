"""POLE's weakly supervised adaptors (eq. 7–8): a bottleneck MLP blended with the embedding by learnable ratios."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Adaptor(nn.Module):
    """Eq. 7 (image side, A_v) and eq. 8 (text side, A_t): v* = r ⊙ A(v) + (1 − r) ⊙ v with
    A(v) = ReLU(v W₁) W₂, W₁: d → d / ``reduction`` and W₂ back to d, both without bias, and r a learnable
    vector of the embedding's shape, initialised at ``ratio_init`` (POLE's code: 0.2; CLIP-Adapter's fixed
    scalar is what the learnable r replaces). POLE's code also puts a ReLU after W₂; the paper's A has none, and
    this follows the paper (a final ReLU would zero every negative coordinate of the adapted embedding)."""

    def __init__(self, dim: int, reduction: int, ratio_init: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, max(1, dim // reduction), bias=False)
        self.up = nn.Linear(max(1, dim // reduction), dim, bias=False)
        self.ratio = nn.Parameter(torch.full((dim,), float(ratio_init)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.up(F.relu(self.down(embeddings))) + (1 - self.ratio) * embeddings

"""ViT-PCM's heads, shared by APC and PCC: the HV-BiLSTM over the patch grid and the softmax patch classifier.

ViT-PCM (deepplants/ViT-PCM; implementation notes, "ViT-PCM"): dropout 0.2 on the tokens, then a horizontal
bidirectional LSTM along each row and a vertical one along each column, run side by side on the same input; each
has ``width / 4`` hidden units per direction, so the two outputs concatenated are ``width`` wide again. The patch
classifier is a bias-free linear layer (weights drawn from N(0, 0.05)) followed by a softmax over the K classes
and the background, per patch.
"""

from __future__ import annotations

import torch
from torch import nn


class HVBiLSTM(nn.Module):
    """(B, H, W, C) tokens → (B, H, W, C): [horizontal BiLSTM along rows ‖ vertical BiLSTM along columns]."""

    def __init__(self, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        if width % 4:
            raise ValueError(f"HV-BiLSTM: token width {width} must be a multiple of 4 (width / 4 per direction)")
        self.dropout = nn.Dropout(dropout)
        self.horizontal = nn.LSTM(width, width // 4, batch_first=True, bidirectional=True)
        self.vertical = nn.LSTM(width, width // 4, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w, c = tokens.shape
        tokens = self.dropout(tokens)
        rows, _ = self.horizontal(tokens.reshape(b * h, w, c))  # each row is a sequence over its columns
        columns, _ = self.vertical(tokens.transpose(1, 2).reshape(b * w, h, c))  # each column over its rows
        rows = rows.reshape(b, h, w, c // 2)
        columns = columns.reshape(b, w, h, c // 2).transpose(1, 2)
        return torch.cat([rows, columns], dim=-1)


class PatchClassifier(nn.Module):
    """(…, C) tokens → (…, K + 1) softmax probabilities; channel 0 is the background."""

    def __init__(self, width: int, num_classes: int, init_std: float = 0.05) -> None:
        super().__init__()
        self.linear = nn.Linear(width, num_classes + 1, bias=False)
        nn.init.normal_(self.linear.weight, std=init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(tokens).softmax(dim=-1)


def top_k_pool(probabilities: torch.Tensor, k: int) -> torch.Tensor:
    """PCC eq. 3: (B, N, C) patch probabilities → (B, C), the mean of each class's ``k`` highest patches."""
    k = min(k, probabilities.shape[1])
    return probabilities.topk(k, dim=1).values.mean(dim=1)


def adaptive_k_pool(
    probabilities: torch.Tensor, k_max: int = 6, theta: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """APC eq. 2 with Algorithm 1: (B, N, C) → (image scores (B, C), chosen k (B, C)).

    Per class, the patches are sorted by score; starting from the top-1 set, the top-i set (i = 2 … ``k_max``)
    replaces the selected set when mean(top-i) / mean(selected) > θ; the score is the selected set's mean.
    Algorithm 1 does not say whether to stop at the first rejection: it need not, because mean(top-i) never
    grows with i while the selected mean stays fixed, so after one rejection every later i is rejected too —
    stopping and continuing give the same k (tested).
    """
    k_max = min(k_max, probabilities.shape[1])
    top = probabilities.topk(k_max, dim=1).values  # (B, k_max, C), descending
    means = top.cumsum(dim=1) / torch.arange(1, k_max + 1, device=top.device).view(1, -1, 1)
    selected, chosen = means[:, 0], torch.ones_like(means[:, 0], dtype=torch.long)
    for i in range(1, k_max):
        accept = means[:, i] > theta * selected  # the ratio test, without dividing by a possible zero
        selected = torch.where(accept, means[:, i], selected)
        chosen = torch.where(accept, torch.full_like(chosen, i + 1), chosen)
    return selected, chosen

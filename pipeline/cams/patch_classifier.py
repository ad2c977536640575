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

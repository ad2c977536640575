"""APC's patch contrastive loss (PCL, eq. 4–6).

For a class c of an image, the high-confidence patches are those whose probability Z_i^c exceeds ε (0.85) and the
low-confidence ones those below 1 − ε. With S̄ = (1 + cos) / 2 (eq. 4–5), eq. 6 is the mean of 1 − S̄ over pairs of
distinct high patches plus the mean of S̄ over (high, low) pairs: high patches of a class are pulled together and
pushed away from the patches that are surely not that class.

Choices the paper leaves open:
- Which classes: the image's labelled classes only. For an absent class no patch should be confident, and its
  high set would hold only misclassified patches, which the loss would then pull together.
- Ordered or unordered pairs: eq. 6 sums over i and j ≠ i, i.e. ordered pairs; S̄ is symmetric, so the mean
  equals the one over unordered pairs — ordered pairs are used, as written.
- Empty sets: a part with no pair (fewer than two high patches, or no low patch) contributes nothing. Eq. 7
  sums the class terms of an image; the batch loss is the mean over its images.
- The embeddings F_out are the tokens the patch classifier reads (after the HV-BiLSTM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalised_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Eq. 4–5: (N, D), (M, D) → (N, M) pairwise (1 + cosine) / 2, in [0, 1]."""
    return (1 + F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T) / 2


def class_contrast(embeddings: torch.Tensor, scores: torch.Tensor, epsilon: float) -> torch.Tensor | None:
    """Eq. 6 for one image and class: (N, D) embeddings, (N,) that class's probabilities; None without pairs."""
    high, low = embeddings[scores > epsilon], embeddings[scores < 1 - epsilon]
    parts = []
    if len(high) >= 2:
        off_diagonal = ~torch.eye(len(high), dtype=torch.bool, device=high.device)
        parts.append((1 - normalised_similarity(high, high)[off_diagonal]).mean())  # 1/N+ Σ_i Σ_j≠i (1 − S̄)
    if len(high) >= 1 and len(low) >= 1:
        parts.append(normalised_similarity(high, low).mean())  # 1/N− Σ_m Σ_n S̄
    return torch.stack(parts).sum() if parts else None


def patch_contrastive_loss(
    embeddings: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.85
) -> torch.Tensor:  # fmt: skip
    """Σ_c L_PCE^c of eq. 7 over each image's labelled classes (terms without pairs left out), batch-averaged.

    ``embeddings`` (B, N, D) patch embeddings, ``probabilities`` (B, N, C) their class probabilities (background
    excluded), ``labels`` (B, C) the image labels in {0, 1}.
    """
    per_image = []
    for b in range(len(labels)):
        classes = torch.nonzero(labels[b] > 0).flatten().tolist()
        terms = [class_contrast(embeddings[b], probabilities[b, :, c], epsilon) for c in classes]
        per_image.append(sum((t for t in terms if t is not None), embeddings.sum() * 0))
    return torch.stack(per_image).mean()  # 0 (with a graph on the embeddings' device) when no class has a pair

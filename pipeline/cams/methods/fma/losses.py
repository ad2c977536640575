"""The two losses of FMA-WSSS (Yang & Gong): MCL (eq. 12) and CAL (eq. 13–15).

- :func:`multi_label_contrastive`, eq. 12: for each present class p of an image,
  −log(e^{Y_p} / (e^{Y_p} + Σ_{n ∈ F−P} e^{Y_n})) = softplus(logsumexp_n Y_n − Y_p), over foreground logits
  only; as in the reference code an image counts only when it has a positive and a negative class, and the
  mean runs over all positives of the batch (0 when no image counts).
- :func:`cam_activation`, eq. 13–15 on raw Softmax-GradCAMs (no ReLU, no normalisation), upsampled
  bilinearly to the seed map: for each present class c, on its coarse-seed pixels |max(M_c there).detach()⁺ −
  M_c| (eq. 13), on the labelled pixels of other labels (background and other classes; 255 is ignored)
  max(M_c, 0) (eq. 14). Eq. 15 divides by |P|·HW. The reference (``libs/loss/cam_lb.py:CAMIntensityLoss``,
  ``reduce='all'``) divides the batch's whole sum by Σ over its (image, positive class) pairs of the image's
  labelled pixels: the paper's |P|·HW pooled over the batch, with 255 left out of HW. That is what runs here
  (the implementation notes' "divided by the labelled pixels", per image and then averaged, was |P| times too
  large). A batch without labelled pixels of a present class gives 0 (no NaN). P is the classes present in the
  image's cropped coarse seeds (the reference's ``ol_cls_lb``), chosen by the model
  (pipeline/cams/methods/fma/model.py).

``scale="max"`` (our choice; the paper and its code use the raw maps): each raw map is first divided by its own
max |M_c| over the patch grid, kept in the graph, so the loss reads the map's shape and not its scale. The raw
loss is also lowered by shrinking a map everywhere (both terms are linear in its scale), and on the demo's
stand-in CLIP that is what training found: with the prompts free to move, the present class's softmax share
went to the learned background prompts and |M| fell from ~1e-4 to ~1e-9 within 50 steps, while the maps'
shape did not improve. Inference max-normalises the maps (eq. 3), so their scale carries nothing downstream;
on the maps' own range the prompts learn the shape instead (README, FMA-WSSS).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.cams.methods.fma.params import CalScale

IGNORE = 255


def multi_label_contrastive(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 12 on (B, K) foreground logits (Y = logit_scale · cosine) and (B, K) multi-hot targets."""
    positive = targets > 0.5
    counts = positive & (positive.any(dim=1) & (~positive).any(dim=1))[:, None]
    if not counts.any():
        return logits.sum() * 0.0
    negatives = torch.logsumexp(logits.masked_fill(positive, float("-inf")), dim=1, keepdim=True)
    return F.softplus(negatives - logits)[counts].mean()


def cam_activation(cams: torch.Tensor, seeds: torch.Tensor, label: int) -> torch.Tensor:
    """Eq. 13 + 14 for one class of one image, summed over pixels (not yet divided).

    ``cams`` (H, W): the class's raw map at the seed map's size; ``seeds`` (H, W) long: 0 background,
    ``label`` this class, other classes, 255 ignored.
    """
    inside = seeds == label
    others = (seeds != label) & (seeds != IGNORE)
    loss = F.relu(cams[others]).sum()
    if inside.any():
        peak = cams[inside].max().detach().clamp(min=0)
        loss = loss + (peak - cams[inside]).abs().sum()
    return loss


def cam_activation_loss(
    cams: list[torch.Tensor], classes: list[list[int]], seeds: torch.Tensor, scale: CalScale = "raw"
) -> torch.Tensor:  # fmt: skip
    """Eq. 15 over a batch: ``cams[b]`` (|P_b|, h, w) raw maps of image b's present classes ``classes[b]``
    (0-based), ``seeds`` (B, H, W) coarse seeds (class c is label c + 1); ``scale`` "raw" (eq. 13–15) or "max"
    (each map divided by its own max |M| first, see the module docstring). The sum over the batch is divided by
    Σ_b |P_b| · (labelled pixels of b), as the reference pools it."""
    if scale == "max":
        cams = [m / m.abs().amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12) for m in cams]
    sums, pixels = [], 0
    for maps, present, seed in zip(cams, classes, seeds, strict=True):
        labelled = int((seed != IGNORE).sum())
        if not present or labelled == 0:
            sums.append(maps.sum() * 0.0)
            continue
        upsampled = F.interpolate(maps[None], size=seed.shape, mode="bilinear", align_corners=False)[0]
        sums.append(sum(cam_activation(cam, seed, c + 1) for cam, c in zip(upsampled, present, strict=True)))
        pixels += labelled * len(present)
    return torch.stack(sums).sum() / max(pixels, 1)

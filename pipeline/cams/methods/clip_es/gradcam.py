"""Softmax-GradCAM (CLIP-ES; eq. 1–3 of the FMA-WSSS paper, which restates it).

- eq. 1, :func:`softmax_scores`: s^c = exp(Y^c) / Σ_{c' ∈ P ∪ B} exp(Y^c'), Y = logit_scale · cos(f_I, f_T),
  the softmax over the image's present classes P and the background prompts B only;
- eq. 2–3, :func:`gradcam`: w_k^c = mean_{u,v} ∂s^c/∂F_{k,u,v}, M^c = ReLU(Σ_k w_k^c F_k), F the last block's
  ``ln_1`` output on the patch grid (pipeline/clip/vision.py); :func:`raw_gradcam` is Σ_k w_k^c F_k before
  the ReLU, optionally differentiable in the weights (FMA-WSSS's CAM activation loss trains through it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softmax_scores(
    image_embedding: torch.Tensor, class_text: torch.Tensor, background_text: torch.Tensor, logit_scale: torch.Tensor,
    present: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Eq. 1: (…, K) scores of the class prompts ``class_text`` (K, D) for image embeddings (…, D), the softmax
    over the present classes and the background prompts (B, D) only. The present classes are the prompts given
    (CLIP-ES passes the image's own) or, for a batch, those ``present`` (…, K, bool) marks; an absent class
    takes no part and scores 0. Text embeddings are L2-normalised, the images' are normalised here."""
    image = F.normalize(image_embedding, dim=-1)
    logits = logit_scale * image @ torch.cat([class_text, background_text]).T
    if present is not None:
        logits = logits.masked_fill(F.pad(~present, (0, len(background_text)), value=False), float("-inf"))
    return logits.softmax(dim=-1)[..., : len(class_text)]


def raw_gradcam(score: torch.Tensor, features: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Σ_k w_k F_k (eq. 2–3 without the ReLU) of a score w.r.t. the feature map F (…, K, h, w), which requires
    gradients: (…, h, w). The activations F are detached; with ``create_graph`` the result is differentiable
    through the weights w (a double backward). A score summed over a batch gives each image its own map."""
    (gradient,) = torch.autograd.grad(score, features, retain_graph=True, create_graph=create_graph)
    weights = gradient.mean(dim=(-2, -1), keepdim=True)
    return (weights * features.detach()).sum(dim=-3)


def gradcam(score: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Eq. 2–3: the (h, w) CAM of one score w.r.t. the feature map F (K, h, w), which requires gradients."""
    return F.relu(raw_gradcam(score, features))

"""CLIMS's CLIP losses on CAM-masked images (eq. 3–5 of the POLE paper, and CLIMS's two further terms).

For an image X with a present class k and its sigmoid CAM P_k, the frozen CLIP embeds the object view X·P_k
and the background view X·(1 − P_k) (eq. 3); the class prompt t_k is embedded by the text tower (eq. 4).
With s^oo_k and s^bo_k their cosines with t_k:

- object–text matching (eq. 5, α): −log s^oo_k — the object view must look like the class;
- background–text matching (eq. 5, β): −log(1 − s^bo_k) — what the CAM leaves out must not;
- co-occurring background suppression (CLIMS): −log(1 − cos(X·P_k, t_b)) for every background prompt t_b
  whose cosine with the object view exceeds a threshold (0.26) — the CAM must not take the water with the boat;
- area regularisation (CLIMS): the mean CAM activation, which keeps the maps from covering everything.

As the reference code does, cosines are clamped to [1e-4, 0.9999] before the logarithms, the two matching
terms are averaged over the batch's (image, present class) pairs, the suppression term is summed over the
pairs and the prompts, and the area term is the mean over every class map of the batch. Where the reference
takes the logarithm of an unclamped cosine (suppression), ours is clamped too, so a cosine of 1 gives a large
finite loss instead of infinity.
"""

from __future__ import annotations

import torch

SIMILARITY_RANGE = (1e-4, 0.9999)


def object_matching(object_text: torch.Tensor) -> torch.Tensor:
    """Eq. 5, first term (before α): −mean log s^oo over the pairs, s^oo = cos(f_v(X·P_k), f_t(t_k))."""
    return -torch.log(object_text.clamp(*SIMILARITY_RANGE)).mean()


def background_matching(background_text: torch.Tensor) -> torch.Tensor:
    """Eq. 5, second term (before β): −mean log(1 − s^bo) over the pairs, s^bo = cos(f_v(X·(1 − P_k)), f_t(t_k))."""
    return -torch.log(1 - background_text.clamp(*SIMILARITY_RANGE)).mean()


def background_suppression(object_background: torch.Tensor, threshold: float) -> torch.Tensor:
    """CLIMS's co-occurring background suppression: Σ over pairs and background prompts whose cosine with the
    object view exceeds ``threshold`` of −log(1 − cos). ``object_background`` is (pairs, prompts)."""
    active = object_background > threshold
    loss = -torch.log(1 - object_background.clamp(*SIMILARITY_RANGE))
    return (loss * active).sum()


def area(cams: torch.Tensor) -> torch.Tensor:
    """CLIMS's area regularisation: the mean of all sigmoid CAM values (B, K, h, w)."""
    return cams.mean()

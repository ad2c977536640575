"""PCC: Prompt Categories Cluster (Wu et al.; ``004_*`` in shared/papers): ViT-PCM with a category-cluster token.

- eq. 1, :class:`~pipeline.cams.methods.pcc.clusters.ClusterToken`: F_c = uᵀG, the image's cluster vector u
  (which LLM-made clusters of ``artifacts/vocab/clusters.json`` its labelled classes belong to) through the
  learnable G, concatenated to every patch token;
- eq. 2: Z = softmax(HV-BiLSTM([F_v ‖ F_c]) W) over the classes and the background
  (:mod:`pipeline.cams.patch_classifier`);
- eq. 3, :func:`~pipeline.cams.patch_classifier.top_k_pool`: each class's score is the mean of its k = 6
  highest patches;
- eq. 4, :func:`~pipeline.cams.patch_classifier.image_bce`: BCE between the scores and the image labels.

Where the paper is silent we chose, and say why:

- u at inference. The paper builds u from the image's labels, and says nothing about images without them. CAMs
  are made for images whose labels are known (the pseudo labels of the train split), so ``infer_cams`` builds
  u from the listed classes, as training does. The label metrics, which must not see the labels they score,
  use ``image_scores``: each class c is scored with u set to c's own clusters — the hypothesis "the image holds
  c" — one pass of the heads per distinct cluster vector, the ViT features computed once.
- H (``cluster_width``): 32 on the demo (96-wide tokens); the paper does not give it. The widened token
  (width + H) must be a multiple of 4 for the HV-BiLSTM (width / 4 hidden units per direction).
- G starts from N(0, 0.02), the initialisation ViTs give their class and position tokens.
- The number of clusters is whatever the vocab stage produced (PCC's Algorithm 1 lets the LLM decide).
"""

from __future__ import annotations

import torch

from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.pcc.clusters import ClusterToken, membership_matrix, with_cluster_token
from pipeline.cams.methods.pcc.params import PccParams
from pipeline.cams.patch_classifier import PatchClassifierMethod, PatchNetwork, image_bce, score_logits, top_k_pool
from pipeline.cams.registry import CAM_METHODS


@CAM_METHODS.register("pcc")
class Pcc(PatchClassifierMethod):
    """ViT → [patch tokens ‖ cluster token] → HV-BiLSTM → softmax patch classifier → top-k pooling."""

    params_model = PccParams

    def __init__(self, params: PccParams, membership: torch.Tensor, pretrained: bool) -> None:
        super().__init__()
        self.params = params
        self.network = PatchNetwork(params, membership.shape[0], pretrained, extra_width=params.cluster_width)
        self.clusters = ClusterToken(membership, params.cluster_width, params.cluster_init_std)
        self.adopt_backbone()

    @classmethod
    def build(cls, params: PccParams, context: BuildContext) -> Pcc:
        membership, _ = membership_matrix(context.inputs["clusters"], context.class_names)
        return cls(params, membership, context.pretrained)

    def _probabilities(self, tokens: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) ViT tokens and (B, L) cluster vectors → Z (B, h, w, K + 1) (eq. 1–2)."""
        return self.network.classify(with_cluster_token(tokens, self.clusters(vectors)))[1]

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        probabilities = self._probabilities(self.network.tokens(images), self.clusters.cluster_vectors(targets))
        scores = top_k_pool(probabilities.flatten(1, 2), self.params.top_k)
        return {"classification": image_bce(scores, targets)}

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Each class's top-k score with u = that class's clusters (see the module docstring), as logits."""
        tokens = self.network.tokens(images)
        rows, per_class = torch.unique(self.clusters.membership, dim=0, return_inverse=True)
        scores = torch.zeros(len(images), len(per_class) + 1, device=images.device)
        for index, vector in enumerate(rows):
            probabilities = self._probabilities(tokens, vector.expand(len(images), -1))
            pooled = top_k_pool(probabilities.flatten(1, 2), self.params.top_k)
            chosen = torch.nonzero(per_class == index).flatten() + 1
            scores[:, chosen] = pooled[:, chosen]
        return score_logits(scores)

    def patch_probabilities(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        vectors = self.clusters.cluster_vectors(labels)
        return self._probabilities(self.network.tokens(images), vectors).permute(0, 3, 1, 2)

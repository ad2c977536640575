"""FMA-WSSS (Yang & Gong, "Foundation Model Assisted Weakly Supervised Semantic Segmentation") as two CAM methods.

Only prompts are learned, on a frozen CLIP (never saved); CAMs are CLIP-ES's Softmax-GradCAM + CAA with the
learned prompts' text embeddings (eq. 1–4):

- ``fma_cls`` (classification phase): unified context, class words last (eq. 5) for the foreground classes
  and the background words; MCL (eq. 12) on the foreground logits of the mean-patch image embedding, which is
  the embedding its CAMs are computed from;
- ``fma`` (segmentation phase): class-specific contexts, class words first (eq. 6), nameless learned
  background prompts (eq. 7); CAL (eq. 13–15) between its raw Softmax-GradCAMs and the coarse seeds of
  ``fma_cls`` (SAMS on its CAMs; :mod:`pipeline.cams.coarse`). The softmax runs over the image's present
  classes and every background prompt; the gradient reaches the prompts through GradCAM's weights only
  (a double backward, the activations detached); ``cal_scale: max`` reads each map on its own range.

Logits use the CLIP's own logit scale (100 for OpenAI's weights, which the reference hard-codes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext
from pipeline.cams.frozen_clip import prompt_words
from pipeline.cams.methods.clip_es.gradcam import raw_gradcam, softmax_scores
from pipeline.cams.methods.clip_es.model import ClipCamModel
from pipeline.cams.methods.fma.losses import cam_activation_loss, multi_label_contrastive
from pipeline.cams.methods.fma.params import FmaClassificationParams, FmaParams, PromptMethodParams
from pipeline.cams.methods.fma.prompts import PromptLearner
from pipeline.cams.network_params import CamTrainingParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.clip.models import Clip, load_clip
from pipeline.clip.vision import encode_image, vision_pass
from pipeline.trainer import warmup_cosine


class PromptCamModel(ClipCamModel):
    """Learned prompts for the foreground classes then the background on a frozen CLIP; SGD or AdamW on the
    context vectors alone; text embeddings cached while not training."""

    class_first: bool  # the prompt layout: eq. 6–7 (segmentation phase) or eq. 5 (classification phase)

    def __init__(self, params: PromptMethodParams, clip: Clip, class_names: tuple[str, ...]) -> None:
        super().__init__(clip)
        self.params = params
        self.num_classes = len(class_names)
        words = [prompt_words(name, params.class_words) for name in class_names]
        background = [""] * len(params.background) if self.class_first else list(params.background)
        self.prompts = PromptLearner(clip, words + background, params.prompts.context_tokens, self.class_first,
                                     params.prompts.init_std)  # fmt: skip
        self._text: torch.Tensor | None = None

    @classmethod
    def build(cls, params: PromptMethodParams, context: BuildContext) -> PromptCamModel:
        return cls(params, load_clip(context.inputs["clip"], context.device), context.class_names)

    def text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (K, D) foreground and (B, D) background prompt embeddings (differentiable while training)."""
        if self.training:
            text = self.prompts()
        else:
            if self._text is None:
                with torch.no_grad():
                    self._text = self.prompts()
            text = self._text
        return text[: self.num_classes], text[self.num_classes :]

    def train(self, mode: bool = True) -> PromptCamModel:
        self._text = None
        return super().train(mode)

    def load_saved(self, state: Mapping[str, torch.Tensor]) -> None:
        super().load_saved(state)
        self._text = None

    def parameter_groups(self, training: CamTrainingParams) -> list[dict[str, Any]]:
        return [{"name": "prompts", "params": [self.prompts.context], "lr": training.lr}]

    def lr_schedule(self, group: str, training: CamTrainingParams, steps_per_epoch: int) -> Callable[[int], float]:
        """A constant ``warmup_factor`` over the warm-up steps, then cosine to 0 (FMA-WSSS's schedule)."""
        steps = training.epochs * steps_per_epoch
        warmup = round(steps * training.warmup_fraction)
        cosine = warmup_cosine(steps - warmup, 0.0)
        return lambda step: training.warmup_factor if step < warmup else cosine(step - warmup)

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.zero_shot_scores(images, self.text()[0])

    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """(B, len(classes), h, w) Softmax-GradCAMs with the learned prompts, CAA-refined when enabled."""
        foreground, background = self.text()
        return self.softmax_gradcams(images, foreground[classes], background, self.params.caa)


@CAM_METHODS.register("fma_cls")
class FmaClassification(PromptCamModel):
    params_model = FmaClassificationParams
    class_first = False

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 12 on the foreground logits of the mean-patch image embedding (the tower is frozen)."""
        with torch.no_grad():
            embedding = F.normalize(encode_image(self.clip.visual, images, mean_patches=True), dim=-1)
        foreground, _ = self.text()
        return {"mcl": multi_label_contrastive(self.clip.logit_scale * embedding @ foreground.T, targets)}


def classes_in_seeds(seeds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K) bool: class c (label c + 1) has a pixel in image b's seed map (0 and 255 are no class)."""
    labels = seeds.flatten(1).long()
    hits = torch.zeros(len(labels), num_classes + 2, dtype=torch.bool, device=seeds.device)
    hits.scatter_(1, torch.where(labels <= num_classes, labels, num_classes + 1), True)
    return hits[:, 1 : num_classes + 1]


@CAM_METHODS.register("fma")
class Fma(PromptCamModel):
    params_model = FmaParams
    class_first = True

    def training_step(
        self, images: torch.Tensor, targets: torch.Tensor, seeds: torch.Tensor
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Eq. 13–15 between the raw Softmax-GradCAMs of each image's present classes and its coarse seeds.

        The present classes are those in the cropped seeds (FMA-WSSS's ``ol_cls_lb``: a labelled class the crop
        cut out is neither a positive nor in the softmax), not the image's labels ``targets``."""
        passed = vision_pass(self.clip.visual, images)
        foreground, background = self.text()
        present = classes_in_seeds(seeds, targets.shape[1])
        scores = softmax_scores(passed.image_embedding, foreground, background, self.clip.logit_scale, present)
        classes = [torch.nonzero(row).flatten().tolist() for row in present]
        maps: list[list[torch.Tensor]] = [[] for _ in classes]
        for slot in range(max((len(c) for c in classes), default=0)):
            rows = [b for b, c in enumerate(classes) if len(c) > slot]
            # each image's score depends on its own features only: one backward gives every image its map
            score = scores[rows, [classes[b][slot] for b in rows]].sum()
            cams = raw_gradcam(score, passed.features, create_graph=True)
            for b in rows:
                maps[b].append(cams[b])
        if not any(maps):  # no image of the batch has a class (data.no_foreground: keep)
            return {"cal": self.prompts.context.sum() * 0.0}
        grid = passed.features.shape[-2:]
        stacked = [torch.stack(m) if m else passed.features.new_zeros(0, *grid) for m in maps]
        return {"cal": cam_activation_loss(stacked, classes, seeds, self.params.cal_scale)}

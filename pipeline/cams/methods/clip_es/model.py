"""CLIP-ES as a CAM method: training-free CAMs from a frozen CLIP (Lin et al., CVPR 2023).

For each image: one pass through the image tower (pipeline/clip/vision.py), the softmax over the present
classes' prompts and the background prompts (eq. 1), one Softmax-GradCAM per present class (eq. 2–3), each
min-max normalised and, with ``caa.enabled``, refined by the class-aware attention-based affinity (eq. 4).
The prompts' text embeddings are computed once at build. ``image_scores`` (label metrics only) is CLIP's
zero-shot classification: logit_scale · cosine against every class's prompt, centred by the mean over
classes (a softmax-free, per-image score whose ranking across images mAP reads).

Where CLIP-ES is silent or our pipeline differs: the maps go through the shared multi-scale extraction
(``cam.inference``; CLIP-ES itself used one scale and no flip — the paper-scale presets say so); inputs are
padded, not resized, to a multiple of the patch size by that extraction; the stand-in's prompts name the
classes in the synthetic corpus's words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext
from pipeline.cams.frozen_clip import FrozenClipModel
from pipeline.cams.methods.clip_es import caa
from pipeline.cams.methods.clip_es.gradcam import gradcam, softmax_scores
from pipeline.cams.methods.clip_es.params import CaaParams, ClipEsParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.clip.models import Clip, load_clip
from pipeline.clip.vision import encode_image, vision_pass


class ClipCamModel(FrozenClipModel):
    """A CAM method on a frozen :class:`Clip`, its input normalisation and patch size taken from the CLIP; the
    Softmax-GradCAM + CAA maps and zero-shot scores of given prompt embeddings, which CLIP-ES fixes and
    FMA-WSSS learns."""

    def __init__(self, clip: Clip) -> None:
        super().__init__(clip)
        self.input_mean, self.input_std = tuple(clip.mean), tuple(clip.std)
        self.size_multiple = int(clip.visual.patch_size[0])

    @torch.no_grad()
    def zero_shot_scores(self, images: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
        """logit_scale · cosine against every class's prompt, centred over the classes (label metrics)."""
        embedding = F.normalize(encode_image(self.clip.visual, images), dim=-1)
        logits = self.clip.logit_scale * embedding @ class_text.T
        return logits - logits.mean(dim=-1, keepdim=True)

    def softmax_gradcams(
        self, images: torch.Tensor, class_text: torch.Tensor, background_text: torch.Tensor, caa_params: CaaParams
    ) -> torch.Tensor:  # fmt: skip
        """(B, P, h, w) Softmax-GradCAMs of the P prompts ``class_text`` against themselves and the background
        prompts (eq. 1–3), each max-normalised and, with ``caa_params.enabled``, CAA-refined (eq. 4)."""
        maps = []
        for image in images:
            passed = vision_pass(self.clip.visual, image[None])
            with torch.enable_grad():  # GradCAM, even when the caller disabled gradients
                scores = softmax_scores(passed.image_embedding[0], class_text, background_text,
                                        self.clip.logit_scale)  # fmt: skip
                cams = [gradcam(score, passed.features)[0] for score in scores]
            cams = [cam / cam.max().clamp(min=1e-12) for cam in cams]  # ReLU'd already: min 0
            if caa_params.enabled:
                matrix = caa.affinity([a[0] for a in passed.attentions], caa_params.blocks,
                                      caa_params.sinkhorn_rounds, caa_params.power)  # fmt: skip
                cams = [caa.refine(cam, matrix, caa_params.box_threshold) for cam in cams]
            maps.append(torch.stack(cams))
        return torch.stack(maps)


@CAM_METHODS.register("clip_es")
class ClipEs(ClipCamModel):
    params_model = ClipEsParams

    def __init__(self, params: ClipEsParams, clip: Clip, class_names: tuple[str, ...]) -> None:
        super().__init__(clip)
        self.params = params
        self.register_prompts(params.template, class_names, params.class_words, params.background)

    @classmethod
    def build(cls, params: ClipEsParams, context: BuildContext) -> ClipEs:
        return cls(params, load_clip(context.inputs["clip"], context.device), context.class_names)

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("CLIP-ES is training-free")

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-shot logits against every class's prompt, centred over the classes."""
        return self.zero_shot_scores(images, self.class_text)

    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """(B, len(classes), h, w) Softmax-GradCAMs on the patch grid, CAA-refined when enabled."""
        return self.softmax_gradcams(images, self.class_text[classes], self.background_text, self.params.caa)

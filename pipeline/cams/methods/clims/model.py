"""CLIMS as a CAM method: plain CAM's network retrained with a frozen CLIP as its supervisor (eq. 3–5 of POLE).

The network is the first phase's — plain CAM (``cam.cam``), trained by ``train_coarse`` — and starts from its
weights, as CLIMS starts from its CAM baseline. While training, the CAM is the sigmoid of the 1×1 classifier on
the stride-16 features (no GAP). Every (image, present class) pair gives two views, the image times its CAM and
times one minus it, built in the CLIP's own input space: the batch is brought back to [0, 1] RGB from the
network's normalisation, resized to the CLIP's input size with its CAMs, masked, and only then normalised with
CLIP's mean and std (the reference masks the ImageNet-normalised tensor instead). Both views go through the
frozen image tower in one batch, with gradients reaching the CAM through the pixels. The losses are
:mod:`pipeline.cams.methods.clims.losses`, each logged weighted. At inference the CAM is the classifier's raw
map, ReLU'd and normalised by the shared extraction, as CLIMS's own CAM extraction does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext
from pipeline.cams.frozen_clip import FrozenClipModel, masked_views
from pipeline.cams.methods.clims import losses
from pipeline.cams.methods.clims.params import ClimsParams
from pipeline.cams.methods.plain_cam.params import PlainCamParams
from pipeline.cams.network import ActivationNetwork
from pipeline.clip.models import Clip, load_clip
from pipeline.clip.vision import encode_image


def first_phase_network(checkpoint: Path) -> tuple[PlainCamParams, dict[str, torch.Tensor]]:
    """The plain-CAM params and network weights of the first phase's ``model.pt``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state.get("method") != ClimsParams.coarse_method:
        raise ValueError(f"{checkpoint}: CLIMS starts from a '{ClimsParams.coarse_method}' model, "
                         f"found '{state.get('method')}' (`dvc repro train_coarse`)")  # fmt: skip
    prefix = "network."
    weights = {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    return PlainCamParams(**state["params"]), weights


class Clims(FrozenClipModel):
    params_model = ClimsParams

    def __init__(self, params: ClimsParams, network: PlainCamParams, clip: Clip, class_names: tuple[str, ...]) -> None:
        super().__init__(clip)
        self.params = params
        self.network = ActivationNetwork(network, len(class_names), pretrained=False)
        backbone = self.network.backbone
        self.size_multiple, self.input_mean, self.input_std = backbone.size_multiple, backbone.mean, backbone.std
        self.register_prompts(params.template, class_names, params.class_words, params.background)

    @classmethod
    def build(cls, params: ClimsParams, context: BuildContext) -> Clims:
        """The first phase's network, with its trained weights unless a checkpoint follows."""
        network, weights = first_phase_network(context.inputs["coarse_model"])
        model = cls(params, network, load_clip(context.inputs["clip"], context.device), context.class_names)
        if context.pretrained:
            model.network.load_state_dict(weights)
        return model

    def clip_views(self, images: torch.Tensor, cams: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Eq. 3: the object views X·P_k and background views X·(1 − P_k) of every present (image, class) pair,
        in CLIP's input space, and each pair's image and class indices."""
        mean = images.new_tensor(self.input_mean)[:, None, None]
        std = images.new_tensor(self.input_std)[:, None, None]
        image_index, classes = torch.nonzero(targets > 0.5, as_tuple=True)
        objects, backgrounds = masked_views(self.clip, (images * std + mean)[image_index],
                                            cams[image_index, classes][:, None])  # fmt: skip
        return objects, backgrounds, image_index, classes

    def training_step(
        self, images: torch.Tensor, targets: torch.Tensor, *per_image: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The four weighted terms on the sigmoid CAMs of the batch (``per_image``: POLE's prompt choices)."""
        cams = torch.sigmoid(self.network.activations(images))
        weights = self.params.weights
        terms = {"area": weights.area * losses.area(cams)}
        objects, backgrounds, image_index, classes = self.clip_views(images, cams, targets)
        if not len(classes):  # no present class in the batch (data.no_foreground: keep): the area term alone
            zero = cams.sum() * 0.0
            return {"object": zero, "background": zero, "suppression": zero, **terms}
        embedded = F.normalize(encode_image(self.clip.visual, torch.cat([objects, backgrounds])), dim=-1)
        object_views, background_views = embedded[: len(classes)], embedded[len(classes) :]
        text = self.pair_text(image_index, classes, *per_image)
        matched_objects, matched_backgrounds, matched_text = self.matching_embeddings(object_views, background_views,
                                                                                      text)  # fmt: skip
        return {
            "object": weights.object * losses.object_matching((matched_objects * matched_text).sum(dim=-1)),
            "background": weights.background * losses.background_matching(
                (matched_backgrounds * matched_text).sum(dim=-1)),
            "suppression": weights.suppression * losses.background_suppression(
                object_views @ self.background_text.T, self.params.suppression_threshold),
            **terms,
        }  # fmt: skip

    def pair_text(self, image_index: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The prompt embedding t_k of each (image, class) pair: CLIMS's one prompt per class."""
        return self.class_text[classes]

    def matching_embeddings(self, objects: torch.Tensor, backgrounds: torch.Tensor, text: torch.Tensor):
        """The embeddings the two matching terms compare (CLIMS: CLIP's own; POLE adapts them, eq. 7–8)."""
        return objects, backgrounds, text

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """The GAP logits of the classifier (label metrics; CLIMS trains no classification loss)."""
        return self.network.activations(images).mean(dim=(2, 3))

    @torch.no_grad()
    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """The classifier's raw maps W_kᵀ Z(h, w) of the listed classes."""
        return self.network.activations(images)[:, classes]


# Registered after the class exists: POLE's module subclasses it, and the registry imports POLE's module.
from pipeline.cams.registry import CAM_METHODS  # noqa: E402

CAM_METHODS.register("clims")(Clims)

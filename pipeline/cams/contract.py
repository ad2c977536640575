"""The contract every CAM method fulfils, and the defaults most methods inherit.

Modelled on mmsegmentation's segmentors (a training step returns a dict of named losses; a separate predict
hook) and detectron2's ``from_config`` (constructors never read the config; ``build`` does). The shared
trainer (:mod:`pipeline.cams.train`) and extraction (:mod:`pipeline.cams.extract`) know a method only
through :class:`CamMethod`:

- ``params_model``: the pydantic model of the method's section in params.yaml (``cam.<name>``);
- ``build(params, context)``: the method as a ``torch.nn.Module``; the :class:`BuildContext` carries the class
  names, the device, whether to load pretrained weights (not when a checkpoint follows) and the paths of the
  extra inputs its params model declares (``extra_inputs``: vocab files; :mod:`pipeline.cams.inputs`);
- ``parameter_groups(training)``: what the optimiser trains, each group with its own learning rate;
- ``lr_schedule(group, training, steps_per_epoch)``: the factor on a group's rate at each step (default: linear
  warm-up then cosine; ViT-PCM's methods freeze the backbone first and drop the heads' rate later);
- ``optimizer(groups, training)``: the optimiser of those groups (default AdamW, or SGD where the schedule's
  ``optimizer`` says so: FMA-WSSS's prompts, CLIMS);
- ``training_step(images, targets)``: named loss terms, summed by the trainer and each logged per epoch; a
  two-phase method (its params' ``coarse_method``) also gets its coarse seeds, cropped alike, as ``seeds``
  (B, H, W; 0 background, class c as c + 1, 255 ignored);
- ``per_image_inputs()``: a tensor per train image id that the batch carries to ``training_step`` after the
  seeds (POLE's prompt choices), or ``None`` (the default);
- ``after_optimizer_step()``: runs after every optimiser step (an EMA teacher's update);
- ``image_scores(images)``: image-level logits, for the label metrics;
- ``infer_cams(images, classes)``: raw class maps (before ReLU and normalisation) of the listed classes; it
  may use gradients (Grad-CAM-style methods), extraction does not disable them. A method whose classifier has
  a background class sets ``has_background`` and puts its background map in front; the CAM store keeps it, for
  seeds that use it. A method with a segmentation decoder (its params' ``has_decoder``) also provides
  ``infer_decoder(images, classes)``, the decoder's maps in the same layout (``cam.inference.head: decoder``);
- ``input_mean`` / ``input_std``: the normalisation its inputs need (ImageNet's, CLIP's, …);
- ``size_multiple``: the side multiple its inputs need (padded to it at inference);
- ``batched_inference``: an image's maps do not depend on the other images of its batch, so extraction may see
  several images of one size together (``cam.inference.batch_size``; tested for every method);
- ``square_inputs``: its training images are resized to ``crop_size`` × ``crop_size`` before augmentation
  (ViT-PCM's 384 × 384) instead of cropped from the image at its aspect (the default);
- ``saved_state()`` / ``load_saved(state)``: what a checkpoint holds — never a frozen foundation model's
  weights (``frozen_prefixes``), which ``build`` loads again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from pipeline.cams.inputs import CamMethodParams
from pipeline.cams.network_params import CamTrainingParams
from pipeline.data.loading import IMAGENET_MEAN, IMAGENET_STD
from pipeline.trainer import warmup_cosine


@dataclass(frozen=True)
class BuildContext:
    """What a method is built with besides its params."""

    class_names: tuple[str, ...]
    device: torch.device = torch.device("cpu")
    pretrained: bool = True  # False: a checkpoint will be loaded over the weights, so load none
    inputs: Mapping[str, Path] = field(default_factory=dict)  # paths of the declared extra inputs, by name


@runtime_checkable
class CamMethod(Protocol):
    """What every registered CAM method provides (see the module docstring)."""

    params_model: ClassVar[type[CamMethodParams]]
    input_mean: tuple[float, float, float]
    input_std: tuple[float, float, float]
    size_multiple: int
    has_background: bool
    batched_inference: bool

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> CamMethod: ...

    def parameter_groups(self, training: CamTrainingParams) -> list[dict[str, Any]]: ...

    def lr_schedule(
        self, group: str, training: CamTrainingParams, steps_per_epoch: int
    ) -> Callable[[int], float]: ...  # fmt: skip

    def optimizer(self, groups: list[dict[str, Any]], training: CamTrainingParams) -> torch.optim.Optimizer: ...

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def per_image_inputs(self) -> Mapping[str, torch.Tensor] | None: ...

    def after_optimizer_step(self) -> None: ...

    def image_scores(self, images: torch.Tensor) -> torch.Tensor: ...

    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor: ...

    def saved_state(self) -> dict[str, torch.Tensor]: ...

    def load_saved(self, state: Mapping[str, torch.Tensor]) -> None: ...


class CamModel(nn.Module):
    """Defaults for :class:`CamMethod`: ImageNet normalisation, two parameter groups (the parameters under
    ``backbone_prefix`` at ``lr × backbone_lr_scale``, the rest at ``lr``), no post-step hook, every weight
    saved but those under ``frozen_prefixes``."""

    params_model: ClassVar[type[CamMethodParams]]
    frozen_prefixes: ClassVar[tuple[str, ...]] = ()
    backbone_prefix: ClassVar[str] = "network.backbone."
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD
    size_multiple: int = 1
    square_inputs: bool = False
    has_background: bool = False
    batched_inference: bool = True

    def parameter_groups(self, training: CamTrainingParams) -> list[dict[str, Any]]:
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        backbone = [p for name, p in trainable if name.startswith(self.backbone_prefix)]
        heads = [p for name, p in trainable if not name.startswith(self.backbone_prefix)]
        groups = [{"name": "backbone", "params": backbone, "lr": training.lr * training.backbone_lr_scale},
                  {"name": "heads", "params": heads, "lr": training.lr}]  # fmt: skip
        return [group for group in groups if group["params"]]

    def lr_schedule(self, group: str, training: CamTrainingParams, steps_per_epoch: int) -> Callable[[int], float]:
        """Every group: linear warm-up from ``warmup_lr`` over ``warmup_fraction`` of the steps, then cosine to
        ``min_lr``."""
        peak = training.lr * (training.backbone_lr_scale if group == "backbone" else 1.0)
        return warmup_cosine(training.epochs * steps_per_epoch, training.warmup_fraction,
                             training.warmup_lr / peak, training.min_lr / peak)  # fmt: skip

    def optimizer(self, groups: list[dict[str, Any]], training: CamTrainingParams) -> torch.optim.Optimizer:
        """AdamW with the params' weight decay, or SGD with momentum when the schedule chooses ``optimizer: sgd``
        (:class:`~pipeline.cams.network_params.OptimizerTrainingParams`)."""
        if getattr(training, "optimizer", "adamw") == "sgd":
            return torch.optim.SGD(groups, momentum=training.momentum, weight_decay=training.weight_decay)
        return torch.optim.AdamW(groups, weight_decay=training.weight_decay)

    def per_image_inputs(self) -> Mapping[str, torch.Tensor] | None:
        """No per-image inputs by default."""
        return None

    def after_optimizer_step(self) -> None:
        """Nothing by default."""

    def saved_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.frozen_prefixes)}

    def load_saved(self, state: Mapping[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(self.frozen_prefixes)]
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")

"""The base of CAM methods that stand on a frozen CLIP (CLIP-ES, FMA-WSSS, CLIMS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.cams.contract import CamModel
from pipeline.clip.corpus import class_prompt_name
from pipeline.clip.models import Clip


def prompt_words(class_name: str, class_words: dict[str, str]) -> str:
    """The words of a class's prompt: the params' mapping, else :func:`class_prompt_name`."""
    return class_words.get(class_name) or class_prompt_name(class_name)


def masked_views(clip: Clip, pixels: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The views X·P and X·(1 − P) in CLIP's input space (POLE eq. 3, 6): [0, 1] RGB ``pixels`` (N, 3, H, W) and
    ``maps`` (N, 1, h, w) resized to CLIP's input size, multiplied, and only then normalised with CLIP's mean and
    std (the reference code masks an ImageNet-normalised, or a uint8, image instead)."""
    size = tuple(clip.visual.image_size)
    pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    mean = pixels.new_tensor(clip.mean)[:, None, None]
    std = pixels.new_tensor(clip.std)[:, None, None]
    return (maps * pixels - mean) / std, ((1 - maps) * pixels - mean) / std


class FrozenClipModel(CamModel):
    """A CAM method holding a frozen :class:`Clip`: registered as ``clip_model`` (so ``.to(device)`` moves it),
    never saved (``frozen_prefixes``: ``build`` loads it again) and kept in eval mode while the method trains —
    no dropout, no normalisation statistics updated."""

    frozen_prefixes = ("clip_model.",)

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.clip_model = clip.model

    def train(self, mode: bool = True) -> FrozenClipModel:
        super().train(mode)
        self.clip_model.eval()
        return self

    def register_prompts(
        self, template: str, class_names: tuple[str, ...], class_words: dict[str, str], background: tuple[str, ...]
    ) -> None:  # fmt: skip
        """Embed the fixed prompts once: ``class_text`` (K, D), each class's words in ``template``, and
        ``background_text`` (B, D), each background word in it (buffers, not saved)."""
        with torch.no_grad():
            classes = [template.format(prompt_words(name, class_words)) for name in class_names]
            self.register_buffer("class_text", self.clip.encode_text(classes), persistent=False)
            words = [template.format(word) for word in background]
            self.register_buffer("background_text", self.clip.encode_text(words), persistent=False)

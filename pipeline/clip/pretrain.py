"""Pretraining the stand-in CLIP on the synthetic caption corpus, and zero-shot classification.

CLIP's contrastive objective (open_clip's ``ClipLoss``; ``SigLipLoss`` as the option) over batches of
captioned corpus images (pipeline/clip/corpus.py), AdamW with warm-up and cosine decay, horizontal flips,
logit scale clamped at 100 as CLIP did. With the MiniLM text tower the sentence encoder stays frozen: each
distinct caption's pooled embedding is computed once and only the text projection and the image tower train.
The epoch loop is the shared resumable one (pipeline/trainer.py), so a killed stage resumes after its last
epoch. After every epoch the zero-shot mAP on the benchmark's val split — prompts "a photo of a {name}.", each
class's score its probability under CLIP's softmax over the class prompts, and beside it the raw cosine — goes
into the curve; the images of that split are never trained on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torchmetrics.classification import MultilabelAveragePrecision

from pipeline.clip.corpus import class_prompt_name, iter_corpus
from pipeline.clip.models import (
    Clip,
    build_from_config,
    stand_in_config,
    stand_in_state,
    tokenizer_for,
)
from pipeline.clip.params import STAND_IN_WEIGHTS, StandInClipParams
from pipeline.clip.vision import encode_image
from pipeline.data.loading import ClassificationDataset
from pipeline.data.manifest import Manifest
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.io import sha256_file, write_torch
from pipeline.live import LIVE_DIR
from pipeline.params import SyntheticDataParams
from pipeline.tracking import progress
from pipeline.trainer import epoch_seed, run_epochs, warmup_cosine

PROMPT_TEMPLATE = "a photo of a {}."


def zero_shot_prompts(class_names: tuple[str, ...], template: str = PROMPT_TEMPLATE) -> list[str]:
    return [template.format(class_prompt_name(name)) for name in class_names]


@torch.no_grad()
def zero_shot_map(clip: Clip, manifest: Manifest, split: str, device: torch.device) -> dict[str, float]:
    """Macro mAP of CLIP's zero-shot classifier on ``split``: ``softmax``, each class's probability under the
    softmax of logit_scale · cosine over all the classes' prompts (CLIP's zero-shot classification), and
    ``cosine``, the raw cosine similarity, whose per-image offset blurs the ranking across images."""
    clip.model.eval()  # the epoch loop sets train mode again at the next epoch
    text = clip.encode_text(zero_shot_prompts(tuple(manifest.classes)))
    metrics = {kind: MultilabelAveragePrecision(num_labels=manifest.num_classes, average="macro")
               for kind in ("softmax", "cosine")}  # fmt: skip
    dataset = ClassificationDataset(manifest, split, normalisation=(clip.mean, clip.std))
    for image, target in dataset:
        image_features = F.normalize(encode_image(clip.visual, image[None].to(device)), dim=-1)
        cosine = (image_features @ text.T).cpu()
        metrics["cosine"].update(cosine, target[None].long())
        metrics["softmax"].update((clip.logit_scale.cpu() * cosine).softmax(dim=-1), target[None].long())
    return {kind: float(metric.compute()) for kind, metric in metrics.items()}


class CaptionedImages:
    """The rendered corpus in memory: uint8 images (N, 3, H, W) at the stand-in's ``image_size`` (the
    generator draws every size the same scene) and each image's caption index."""

    def __init__(self, params: StandInClipParams, look: SyntheticDataParams) -> None:
        images, captions = [], []
        look = look.model_copy(update={"image_size": params.image_size})  # the stand-in's size, not the benchmark's
        corpus = iter_corpus(look, params.corpus_seed, params.num_images, params.context_rate)
        for item in progress(corpus, total=params.num_images, desc="caption corpus"):
            images.append(item.image)
            captions.append(item.caption)
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        self.captions = sorted(set(captions))
        position = {caption: i for i, caption in enumerate(self.captions)}
        self.caption_index = torch.tensor([position[caption] for caption in captions])


class TextTargets:
    """Caption features for a batch: frozen MiniLM embeddings computed once and projected, or the native
    text tower run on the tokens."""

    def __init__(self, clip: Clip, captions: list[str]) -> None:
        self.clip = clip
        self.frozen = isinstance(clip.model, open_clip.CustomTextCLIP)
        self.tokens = clip.tokenize(captions)
        self.pooled = torch.empty(0)
        if self.frozen:
            text = clip.model.text
            text.transformer.requires_grad_(False).eval()  # no dropout: the embeddings are the targets
            with torch.no_grad():
                pooled = []
                for start in progress(range(0, len(captions), 256), desc="caption embeddings"):
                    ids = self.tokens[start : start + 256]
                    mask = (ids != text.config.pad_token_id).long()
                    length = int(mask.sum(dim=1).max())  # trailing padding is masked out: dropping it is exact
                    ids, mask = ids[:, :length], mask[:, :length]
                    pooled.append(text.pooler(text.transformer(input_ids=ids, attention_mask=mask), mask))
            self.pooled = torch.cat(pooled)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            return self.clip.model.text.proj(self.pooled[indices])
        return self.clip.model.encode_text(self.tokens[indices])


def pretrain_stand_in(
    params: StandInClipParams, look: SyntheticDataParams, manifest: Manifest, device: torch.device,
    checkpoint: Path, seed: int = 0, runtime: TrainingRuntime = PLAIN_RUNTIME, live_out: Path | None = None,
) -> tuple[Clip, list[dict[str, float]]]:  # fmt: skip
    """Train the stand-in; return it (eval mode) and its per-epoch curve (loss, zero-shot val mAP); live
    curves in ``live_out`` (:mod:`pipeline.live`)."""
    torch.manual_seed(seed)
    config = stand_in_config(params)
    model = build_from_config(config).to(device)
    clip = Clip(model, tokenizer_for(config), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    corpus = CaptionedImages(params, look)
    targets = TextTargets(clip, corpus.captions)
    mean = torch.tensor(clip.mean, device=device)[:, None, None]
    std = torch.tensor(clip.std, device=device)[:, None, None]
    loss_fn = open_clip.SigLipLoss() if params.loss == "siglip" else open_clip.ClipLoss()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    batches = len(corpus.images) // params.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(params.epochs * batches, params.warmup_fraction)
    )

    def loader(epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(len(corpus.images), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        return [order[b * params.batch_size : (b + 1) * params.batch_size] for b in range(batches)]

    def step(indices: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        images = corpus.images[indices].to(device).float().div_(255).sub_(mean).div_(std)
        flip = torch.rand(len(indices), device=device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(targets(corpus.caption_index[indices]), dim=-1)
        extra = (model.logit_bias,) if params.loss == "siglip" else ()
        return {"contrastive": loss_fn(image_features, text_features, model.logit_scale.exp(), *extra)}, len(indices)

    def clamp_scale() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, float(np.log(100.0)))

    def after_epoch(epoch: int) -> dict[str, float]:
        scores = zero_shot_map(clip, manifest, "val", device)
        return {"val_zero_shot_mAP": scores["softmax"], "val_zero_shot_mAP_cosine": scores["cosine"]}

    history = run_epochs("pretrain_clip", model, optimizer, scheduler, loader, step, params.epochs, seed,
                         checkpoint, clamp_scale, after_epoch, runtime, live_out, system=runtime.system)  # fmt: skip
    model.eval().requires_grad_(False)
    return clip, history


def pretrain_here(
    request: dict[str, Any], manifest: Manifest, device: torch.device, work: Path,
    runtime: TrainingRuntime = PLAIN_RUNTIME, live_out: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, float]]]:  # fmt: skip
    """Pretrain the stand-in of a ``pretrain_here`` request in ``work``: its descriptor, metrics and curve
    (live curves in ``live_out``)."""
    params = StandInClipParams(**request["pretrain_here"])
    look = SyntheticDataParams(**request["look"])
    clip, history = pretrain_stand_in(params, look, manifest, device, work / "checkpoint.pt", request["seed"], runtime,
                                      live_out)  # fmt: skip
    write_torch(work / STAND_IN_WEIGHTS, stand_in_state(clip.model))
    descriptor = {"source": "pretrain_here", "config": stand_in_config(params), "weights": STAND_IN_WEIGHTS,
                  "weights_sha256": sha256_file(work / STAND_IN_WEIGHTS)}  # fmt: skip
    metrics = {"corpus_images": params.num_images, "epochs": params.epochs, "text_tower": params.text_tower,
               "val_zero_shot_mAP": history[-1]["val_zero_shot_mAP"], "prompt": PROMPT_TEMPLATE,
               "val_zero_shot_mAP_cosine": history[-1]["val_zero_shot_mAP_cosine"],
               "zero_shot_scores": "softmax over the class prompts (cosine: raw cosine)"}  # fmt: skip
    (work / "checkpoint.pt").unlink()
    shutil.rmtree(work / LIVE_DIR, ignore_errors=True)  # the curves are in live_out; work becomes the model folder
    return descriptor, metrics, history

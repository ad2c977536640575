"""Test-time helpers shared by CAM extraction and segmentation inference: networks see padded inputs.

Some networks only take sides divisible by their output stride (smp's DeepLabV3+ refuses a 500×375 image);
the others give feature maps misaligned with the image when a side is not a multiple of it. Every network
therefore states ``size_multiple`` and is run through :func:`padded_forward`, which pads each input bottom
and right, and crops the output back, at any scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def size_multiple(model: object) -> int:
    """The side multiple a model's input needs (its ``size_multiple`` attribute; 1 when it states none)."""
    return int(getattr(model, "size_multiple", 1))


def pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """``batch`` (B, 3, h, w) zero-padded bottom/right to sides divisible by ``multiple`` (itself when they are)."""
    pad_h, pad_w = -batch.shape[-2] % multiple, -batch.shape[-1] % multiple
    return F.pad(batch, (0, pad_w, 0, pad_h)) if pad_h or pad_w else batch


def padded_forward(fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """``fn`` on ``batch`` (B, 3, h, w) zero-padded bottom/right to sides divisible by ``multiple``.

    Without padding the output is returned as ``fn`` gives it. With padding it is resized (bilinear) to the
    padded size when it is coarser, and cropped to the original h × w, so callers see the unpadded image only.
    """
    height, width = batch.shape[-2:]
    padded_batch = pad_to_multiple(batch, multiple)
    if padded_batch is batch:
        return fn(batch)
    output = fn(padded_batch)
    padded = tuple(padded_batch.shape[-2:])
    if tuple(output.shape[-2:]) != padded:
        output = F.interpolate(output, size=padded, mode="bilinear", align_corners=False)
    return output[..., :height, :width]


def multiscale_sum(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scales: tuple[float, ...], flip: bool,
    multiple: int = 1, square: int | None = None,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """Test-time augmentation: Σ of ``fn`` over the scaled images (and their horizontal flips), and the number
    of views per image. With ``square`` each view is resized to ``square`` × ``square`` times the scale, its
    aspect not kept.

    ``images``: one (3, H, W) image or a batch (N, 3, H, W) of one size, seen in one forward per scale.
    ``fn`` maps a (B, 3, h, w) batch to (B, C, h', w') maps (already activated: ReLU'd CAMs, softmax); each
    scaled batch goes through :func:`padded_forward`, flipped outputs are flipped back, and every output is
    resized (bilinear) to H × W. Returns ((C, H, W) or (N, C, H, W) sum, number of views summed per image).
    """
    batch = images if images.dim() == 4 else images[None]
    height, width = batch.shape[-2:]
    total, views = None, 0
    for scale in scales:
        sides = (square, square) if square is not None else (height, width)
        size = (max(1, round(sides[0] * scale)), max(1, round(sides[1] * scale)))
        scaled = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        outputs = per_view(padded_forward(fn, with_flips(scaled, flip), multiple), len(batch), flip)
        total = summed_at(outputs, (height, width), total)
        views += len(outputs)
    return (total if images.dim() == 4 else total[0]), views


def stretched_sum(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scales: tuple[float, ...], flip: bool,
    multiple: int = 1,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """CLIP-ES's views (``generate_cams_voc12.py``): each scaled image stretched (bicubic, antialiased, as PIL
    resizes) to sides rounded up to multiples of ``multiple``; each output map divided by its own max at the
    network's resolution, then resized (bilinear, as ``cv2.resize``) to the image's H × W. ``images`` as in
    :func:`multiscale_sum`. Returns ((C, H, W) or (N, C, H, W) sum, number of views summed per image): one
    view's map is the reference's own."""
    batch = images if images.dim() == 4 else images[None]
    height, width = batch.shape[-2:]
    total, views = None, 0
    for scale in scales:
        size = tuple(max(1, math.ceil(side * scale / multiple)) * multiple for side in (height, width))
        scaled = F.interpolate(batch, size=size, mode="bicubic", align_corners=False, antialias=True)
        outputs = per_view(fn(with_flips(scaled, flip)), len(batch), flip)
        outputs = outputs / outputs.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-5)
        total = summed_at(outputs, (height, width), total)
        views += len(outputs)
    return (total if images.dim() == 4 else total[0]), views


def with_flips(batch: torch.Tensor, flip: bool) -> torch.Tensor:
    """(N, 3, h, w) → the batch and, with ``flip``, its horizontal flips after it (2N, 3, h, w)."""
    return torch.cat([batch, batch.flip(-1)]) if flip else batch


def per_view(outputs: torch.Tensor, count: int, flip: bool) -> torch.Tensor:
    """The outputs of :func:`with_flips`' batch of ``count`` images as (views, N, C, h, w), flips flipped back."""
    return torch.stack([outputs[:count], outputs[count:].flip(-1)]) if flip else outputs[None]


def summed_at(views: torch.Tensor, size: tuple[int, int], total: torch.Tensor | None) -> torch.Tensor:
    """``total`` plus the (views, N, C, h, w) maps resized (bilinear) to ``size`` and summed over the views."""
    resized = F.interpolate(views.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    summed = resized.unflatten(0, tuple(views.shape[:2])).sum(dim=0)
    return summed if total is None else total + summed

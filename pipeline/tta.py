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
    fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scales: tuple[float, ...], flip: bool,
    multiple: int = 1, square: int | None = None,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """Test-time augmentation: Σ of ``fn`` over the scaled image (and its horizontal flip), and the view count.
    With ``square`` each view is the image resized to ``square`` × ``square`` times the scale, its aspect not kept.

    ``fn`` maps a (B, 3, h, w) batch to (B, C, h', w') maps (already activated: ReLU'd CAMs, softmax); each
    scaled batch goes through :func:`padded_forward`, flipped outputs are flipped back, and every output is
    resized (bilinear) to the image's H × W. Returns ((C, H, W) sum, number of views summed).
    """
    height, width = image.shape[-2:]
    total, views = None, 0
    for scale in scales:
        sides = (square, square) if square is not None else (height, width)
        size = (max(1, round(sides[0] * scale)), max(1, round(sides[1] * scale)))
        scaled = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        outputs = padded_forward(fn, batch, multiple)
        if flip:
            outputs = torch.stack([outputs[0], outputs[1].flip(-1)])
        outputs = F.interpolate(outputs, size=(height, width), mode="bilinear", align_corners=False).sum(dim=0)
        total = outputs if total is None else total + outputs
        views += len(batch)
    return total, views


def stretched_sum(
    fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scales: tuple[float, ...], flip: bool,
    multiple: int = 1,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """CLIP-ES's views (``generate_cams_voc12.py``): each scaled image stretched (bicubic, antialiased, as PIL
    resizes) to sides rounded up to multiples of ``multiple``; each output map divided by its own max at the
    network's resolution, then resized (bilinear, as ``cv2.resize``) to the image's H × W. Returns ((C, H, W)
    sum, number of views summed): one view's map is the reference's own."""
    height, width = image.shape[-2:]
    total, views = None, 0
    for scale in scales:
        size = tuple(max(1, math.ceil(side * scale / multiple)) * multiple for side in (height, width))
        scaled = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        outputs = fn(batch)
        if flip:
            outputs = torch.stack([outputs[0], outputs[1].flip(-1)])
        outputs = outputs / outputs.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-5)
        outputs = F.interpolate(outputs, size=(height, width), mode="bilinear", align_corners=False).sum(dim=0)
        total = outputs if total is None else total + outputs
        views += len(batch)
    return total, views

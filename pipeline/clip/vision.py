"""CLIP's image tower run block by block: any input size, attention weights kept, the last block with gradients.

open_clip's ``VisionTransformer`` fixes its position embeddings to the training grid and never returns
attention weights; CLIP-ES (and the methods built on it) need both. :func:`vision_pass` re-runs the same
modules: patch embedding (open_clip's ``conv1``, or the stand-in's convolutional stem in its place), class
token, position embeddings bilinearly resized to the input's patch grid (the class token's kept), ``ln_pre``,
the residual blocks (attention weights averaged over heads), ``ln_post`` and the projection of the *mean patch
token* — CLIP-ES's pooling, which localises better than the class token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer


def resized_positions(visual: VisionTransformer, grid: tuple[int, int]) -> torch.Tensor:
    """(1 + h·w, D) position embeddings for an h × w patch grid: the grid part resized bilinearly."""
    positions = visual.positional_embedding
    trained = visual.grid_size
    if tuple(grid) == tuple(trained):
        return positions
    patches = positions[1:].reshape(1, trained[0], trained[1], -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([positions[:1], patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])


def block_forward(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual block (batch first) and its attention weights (B, N, N), averaged over heads."""
    normed = block.ln_1(x)
    attended, weights = block.attn(normed, normed, normed, need_weights=True, average_attn_weights=True)
    x = x + block.ls_1(attended)
    return x + block.ls_2(block.mlp(block.ln_2(x))), weights


@dataclass
class VisionPass:
    """What CLIP-ES reads from one pass: the last block's input tokens ``features`` F (B, D, h, w, the
    ``ln_1`` output with the class token dropped; a leaf that requires gradients), the image embedding
    computed from it, and the attention weights of every block (B, h·w, h·w, patch to patch)."""

    features: torch.Tensor
    image_embedding: torch.Tensor
    attentions: list[torch.Tensor]


def embed_tokens(visual: VisionTransformer, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The token sequence entering the first block (class token first) and the patch grid (h, w)."""
    patch = visual.patch_size
    if images.shape[-2] % patch[0] or images.shape[-1] % patch[1]:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of the patch size {patch}")
    grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
    tokens = visual.conv1(images.to(visual.class_embedding.dtype)).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(tokens.dtype).expand(len(tokens), 1, -1)
    return visual.ln_pre(torch.cat([cls, tokens], dim=1) + resized_positions(visual, grid).to(tokens.dtype)), grid


def pooled_embedding(visual: VisionTransformer, x: torch.Tensor, mean_patches: bool) -> torch.Tensor:
    """``ln_post``, then the mean patch token (``mean_patches``) or the class token, then the projection."""
    x = visual.ln_post(x)
    pooled = x[:, 1:].mean(dim=1) if mean_patches else x[:, 0]
    return pooled @ visual.proj if visual.proj is not None else pooled


def encode_image(visual: VisionTransformer, images: torch.Tensor, mean_patches: bool | None = None) -> torch.Tensor:
    """The image embedding at any input size (multiples of the patch), pooled as the model was trained or, with
    ``mean_patches`` given, by the mean patch token (true, CLIP-ES's pooling) or the class token (false)."""
    if visual.attn_pool is not None or visual.pool_type not in ("tok", "avg"):
        raise TypeError("encode_image supports ViTs pooled by the class token or the mean patch token only")
    x, _ = embed_tokens(visual, images)
    mean_patches = visual.pool_type == "avg" if mean_patches is None else mean_patches
    return pooled_embedding(visual, visual.transformer(x), mean_patches=mean_patches)


def vision_pass(visual: VisionTransformer, images: torch.Tensor) -> VisionPass:
    """Run the image tower on (B, 3, H, W) images, H and W multiples of the patch size (see module docstring).

    The blocks before the last run without gradients; the last one runs from its ``ln_1`` output F, so
    ``torch.autograd.grad(score, pass.features)`` is GradCAM's ∂s/∂F (eq. 2 of FMA-WSSS).
    """
    blocks = list(visual.transformer.resblocks)
    if not all(isinstance(block, ResidualAttentionBlock) and block.attn.batch_first for block in blocks):
        raise TypeError("vision_pass supports open_clip's standard batch-first ViT blocks only")
    attentions = []
    with torch.no_grad():
        x, grid = embed_tokens(visual, images)
        for block in blocks[:-1]:
            x, weights = block_forward(block, x)
            attentions.append(weights[:, 1:, 1:])
    last = blocks[-1]
    with torch.enable_grad():  # extraction may run under no_grad; GradCAM needs this block's graph
        normed = last.ln_1(x).detach()
        features = normed[:, 1:].transpose(1, 2).reshape(len(images), -1, *grid).requires_grad_(True)
        normed = torch.cat([normed[:, :1], features.flatten(2).transpose(1, 2)], dim=1)
        attended, weights = last.attn(normed, normed, normed, need_weights=True, average_attn_weights=True)
        x = x + last.ls_1(attended)
        x = x + last.ls_2(last.mlp(last.ln_2(x)))
        embedding = pooled_embedding(visual, x, mean_patches=True)
    attentions.append(weights[:, 1:, 1:].detach())
    return VisionPass(features=features, image_embedding=embedding, attentions=attentions)

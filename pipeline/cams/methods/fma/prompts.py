"""Learned prompts on a frozen CLIP text tower (CoOp, as FMA-WSSS uses it; eq. 5–7 of the FMA-WSSS paper).

Each prompt is tokenised with N placeholder words where the context goes; the placeholders' token embeddings
are replaced by learned vectors before the text tower runs, so the same code serves open_clip's native text
transformer and a Hugging Face tower (which takes ``inputs_embeds``):

- ``unified`` (eq. 5, classification phase): ``[V]_1 … [V]_N [CLS^c].`` — one context shared by every prompt,
  the class words last;
- class-specific (eq. 6–7, segmentation phase): ``[CLS^c] [V]^c_1 … [V]^c_N .`` — each prompt its own
  context, the class words first; a prompt with empty words (a learned background prompt, eq. 7) is context
  alone.

Context vectors start from N(0, ``init_std``²) (0.015 in FMA-WSSS's code, CoOp's 0.02).
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from pipeline.clip.models import Clip

PLACEHOLDER = "X"  # CoOp's placeholder word; its token embeddings are replaced by the context vectors


def prompt_texts(words: list[str], context_tokens: int, class_first: bool) -> list[str]:
    """The tokenised strings: placeholders then the words (eq. 5) or the words then placeholders (eq. 6–7)."""
    context = " ".join([PLACEHOLDER] * context_tokens)
    if class_first:
        return [f"{w} {context}." if w else f"{context}." for w in words]
    return [f"{context} {w}." for w in words]


def placeholder_positions(
    tokens: torch.Tensor, placeholder: int, context_tokens: int, texts: list[str]
) -> torch.Tensor:
    """(P, N) positions of each prompt's placeholder tokens, which must be N in a row."""
    positions = []
    for row, text in zip(tokens, texts, strict=True):
        found = torch.nonzero(row == placeholder).flatten()
        if len(found) != context_tokens or (len(found) and int(found[-1] - found[0]) != context_tokens - 1):
            raise ValueError(f"prompt {text!r}: expected {context_tokens} context placeholders in a row, found "
                             f"{len(found)} (class words may not contain the word {PLACEHOLDER!r}; the text tower's "
                             "context length may be too short)")  # fmt: skip
        positions.append(found)
    return torch.stack(positions)


class PromptLearner(nn.Module):
    """Prompts for ``words`` (one per prompt) with ``context_tokens`` learned vectors, shared by all prompts
    (``class_first`` false, eq. 5) or one set per prompt (``class_first`` true, eq. 6–7).

    Only ``context`` is a parameter; the frozen CLIP is referenced, not registered (never saved here).
    """

    def __init__(self, clip: Clip, words: list[str], context_tokens: int, class_first: bool, init_std: float) -> None:
        super().__init__()
        self.clip = clip
        self.texts = prompt_texts(words, context_tokens, class_first)
        self.hugging_face = isinstance(clip.model, open_clip.CustomTextCLIP)
        embedding = self._token_embedding()
        placeholder = int(clip.tokenize([PLACEHOLDER])[0, 1])  # after the start token, both tokenizers
        tokens = clip.tokenize(self.texts).cpu()
        positions = placeholder_positions(tokens, placeholder, context_tokens, self.texts)
        with torch.no_grad():
            embedded = embedding(tokens.to(embedding.weight.device)).cpu()
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("positions", positions, persistent=False)
        self.register_buffer("embedded", embedded, persistent=False)
        shape = (context_tokens, embedded.shape[-1]) if not class_first else (len(words), context_tokens,
                                                                               embedded.shape[-1])  # fmt: skip
        self.context = nn.Parameter(torch.randn(shape) * init_std)

    def _token_embedding(self) -> nn.Embedding:
        if self.hugging_face:
            return self.clip.model.text.transformer.get_input_embeddings()
        return self.clip.model.token_embedding

    def prompt_embeddings(self) -> torch.Tensor:
        """(P, L, W) token embeddings with the context vectors in the placeholders' places."""
        count, _, width = self.embedded.shape
        context = self.context.expand(count, -1, -1) if self.context.dim() == 2 else self.context
        index = self.positions[..., None].expand(-1, -1, width)
        return self.embedded.scatter(1, index, context.to(self.embedded.dtype))

    def forward(self) -> torch.Tensor:
        """(P, D) L2-normalised text embeddings of the prompts."""
        x = self.prompt_embeddings()
        model = self.clip.model
        if self.hugging_face:
            text = model.text
            mask = (self.tokens != text.config.pad_token_id).long()
            out = text.transformer(inputs_embeds=x, attention_mask=mask)
            features = text.proj(text.pooler(out, mask))
        else:  # open_clip's CLIP.encode_text from the token embeddings on
            x = x.to(model.transformer.get_cast_dtype()) + model.positional_embedding.to(x.dtype)
            x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
            eos = getattr(model, "text_eos_id", None)
            x = text_global_pool(x, self.tokens, model.text_pool_type, eos_token_id=eos)
            projection = model.text_projection
            if projection is not None:
                x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
            features = x
        return F.normalize(features, dim=-1)

"""POLE's category- and image-driven prompt selection (eq. 6), the ``select_prompts`` stage.

For each train image X and present class k, the baseline's CAM P_k masks the image, M_k = X · P_k — by default
the first phase's CAMs (plain CAM at its multi-scale inference, normalised to [0, 1]), or any method's CAM
store named by ``selection.cams`` — in CLIP's input space (:func:`pipeline.cams.frozen_clip.masked_views`:
[0, 1] RGB, CLIP's normalisation, no uint8 overflow — the reference script's two bugs); CLIP embeds M_k and
the candidate prompts "a photo of {w}." for w in the class's candidates — its ground-truth name (the natural
name), its ``class_words`` word, then the vocab stage's synonyms, ``selection.candidates`` of them — and the
candidate of highest cosine (eq. 6) is the image's prompt for k. The softmax the reference takes over those
cosines does not change the argmax.

Output (``artifacts/coarse/prompts.json``, DVC-tracked): the candidates per class, the baseline method, and the
chosen word per image and class; ``prompt_stats.json``: how often each candidate won, per class, and the
ground-truth name's share. For a request of ``none`` (another CAM method) the stage writes placeholders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cams.frozen_clip import masked_views, prompt_words
from pipeline.cams.store import CamStore
from pipeline.clip.corpus import class_prompt_name
from pipeline.clip.models import Clip, load_clip
from pipeline.clip.vision import encode_image
from pipeline.data.loading import load_image
from pipeline.data.manifest import Manifest
from pipeline.io import inside, write_json
from pipeline.tracking import progress


def candidate_words(
    class_names: tuple[str, ...], synonyms: dict[str, list[str]], class_words: dict[str, str], size: int | None
) -> dict[str, list[str]]:  # fmt: skip
    """Per class: its ground-truth name first, then its ``class_words`` word, then its synonyms (each once),
    the first ``size`` of them (all with None)."""
    out = {}
    for name in class_names:
        words = [class_prompt_name(name)]
        for word in [prompt_words(name, class_words), *synonyms.get(name, [])]:
            if word != name and word not in words:
                words.append(word)
        out[name] = words[:size]
    return out


@torch.no_grad()
def candidate_table(clip: Clip, template: str, candidates: dict[str, list[str]], class_names: tuple[str, ...]):
    """The prompt embeddings of every class's candidates, (K, S, D) zero-padded to the longest list, and the
    (K, S) mask of the real ones; embedded once, for the selection and for POLE's training."""
    width = max(len(words) for words in candidates.values())
    table = torch.stack([F.pad(clip.encode_text([template.format(w) for w in candidates[name]]),
                               (0, 0, 0, width - len(candidates[name]))) for name in class_names])  # fmt: skip
    valid = torch.tensor([[i < len(candidates[name]) for i in range(width)] for name in class_names])
    return table, valid.to(table.device)


def select_synonyms(image_embeddings: torch.Tensor, candidate_text: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 6: for each masked view's embedding (N, D) and its candidates' prompt embeddings (N, S, D), of which
    ``valid`` (N, S) marks the real ones, the index of the candidate with the highest cosine; (N,) long."""
    cosine = torch.einsum("nd,nsd->ns", F.normalize(image_embeddings, dim=-1), F.normalize(candidate_text, dim=-1))
    return cosine.masked_fill(~valid, float("-inf")).argmax(dim=1)


@torch.no_grad()
def masked_image_embeddings(clip: Clip, image: np.ndarray, cams: np.ndarray) -> torch.Tensor:
    """(k, D) CLIP embeddings of X · P_k for the image's k CAMs (H, W in [0, 1])."""
    pixels = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None]
    maps = torch.from_numpy(np.asarray(cams, dtype=np.float32))[:, None]
    device = clip.model.logit_scale.device
    objects, _ = masked_views(clip, pixels.expand(len(maps), -1, -1, -1).to(device), maps.to(device))
    return encode_image(clip.visual, objects)


def select_prompts(request: dict[str, Any], manifest: Manifest, root: Path, synonyms: Path, clip_descriptor: Path,
                   device: torch.device, out: Path, stats_out: Path) -> dict[str, Any]:  # fmt: skip
    """Choose every train (image, class) pair's prompt word into ``out`` from the CAM store the request names
    (inside ``root``, the repository); the statistics into ``stats_out``."""
    class_names = tuple(manifest.classes)
    candidates = candidate_words(
        class_names, json.loads(Path(synonyms).read_text())["synonyms"], request["class_words"], request["candidates"]
    )
    clip = load_clip(clip_descriptor, device)
    table, valid = candidate_table(clip, request["template"], candidates, class_names)
    store = CamStore(inside(root, request["cams"]))
    if store.attributes.get("split", "train") != "train":
        raise ValueError(f"{request['cams']}: CAMs of the {store.attributes['split']} split; the selection needs train")
    by_id = manifest.by_id()
    choices: dict[str, dict[str, str]] = {}
    counts = {name: dict.fromkeys(words, 0) for name, words in candidates.items()}
    for image_id in progress(store.ids(), desc="select_prompts"):
        maps, classes = store.read(image_id)
        if not classes:  # an image kept as a negative: no pair, but listed (every train image has an entry)
            choices[image_id] = {}
            continue
        embeddings = masked_image_embeddings(clip, load_image(manifest, by_id[image_id]), maps)
        names = [class_names[c] for c in classes]
        chosen = select_synonyms(embeddings, table[classes], valid[classes])
        choices[image_id] = {n: candidates[n][int(i)] for n, i in zip(names, chosen, strict=True)}
        for n, word in choices[image_id].items():
            counts[n][word] += 1
    write_json(out, {"method": request["method"], "baseline": store.attributes.get("method"),
                     "template": request["template"], "candidates": candidates,
                     "choices": dict(sorted(choices.items()))})  # fmt: skip
    stats = prompt_statistics(counts, candidates)
    write_json(stats_out, stats)
    return stats


def prompt_statistics(counts: dict[str, dict[str, int]], candidates: dict[str, list[str]]) -> dict[str, Any]:
    """How often each candidate won per class, and the share of pairs whose winner is the ground-truth name."""
    pairs = sum(sum(c.values()) for c in counts.values())
    ground_truth = sum(counts[name][words[0]] for name, words in candidates.items())
    return {
        "pairs": pairs,
        "ground_truth_share": ground_truth / pairs if pairs else None,
        "per_class": {name: dict(sorted(c.items(), key=lambda kv: -kv[1])) for name, c in counts.items()},
    }

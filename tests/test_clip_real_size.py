"""CLIP-ES and FMA-WSSS on a ViT-B/16-shaped open_clip model (random weights) at 224² and VOC's 500 × 375."""

from __future__ import annotations

import pytest

from benchmarks.clip_real_size import clip_es_at, fma_steps_at


@pytest.mark.parametrize(("height", "width"), [(224, 224), (375, 500)])
def test_clip_es_cams_at_real_sizes(height: int, width: int) -> None:
    result = clip_es_at(height, width)
    assert result["parameters_m"] > 140  # ViT-B/16 CLIP: 86 M image + 63 M text
    assert result["cam_shape"] == [2, height, width]
    assert 0.0 <= result["cam_range"][0] <= result["cam_range"][1] <= 1.0


@pytest.mark.parametrize(("height", "width"), [(224, 224), (375, 500)])
def test_fma_training_steps_at_real_sizes(height: int, width: int) -> None:
    result = fma_steps_at(height, width)
    assert result["classification_loss"] > 0 and result["segmentation_loss"] >= 0
    assert all(result[f"{phase}_seconds"] > 0 for phase in ("classification", "segmentation"))

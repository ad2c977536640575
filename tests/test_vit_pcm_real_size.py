"""Real-size smoke test: APC and PCC take a training step and make CAMs on 384 × 384 inputs through a
ViT-B/16-shaped model (random weights); benchmarks/vit_pcm_real_size.py reports time and peak memory."""

import json
from pathlib import Path

import pytest

from benchmarks.vit_pcm_real_size import CLASSES, SIDE, real_size_step


@pytest.mark.parametrize("method", ["apc", "pcc"])
def test_a_vit_b16_step_and_cams_at_384(method: str, tmp_path: Path) -> None:
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"membership": {name: [f"g{i % 3}"] for i, name in enumerate(CLASSES)}}))
    result = real_size_step(method, batch=1, inputs={"clusters": clusters})
    assert result["parameters_m"] > 85  # ViT-B/16 alone has 86 M
    assert all(value == value and value >= 0 for value in result["losses"].values())  # finite, non-negative
    assert result["cam_shape"] == [3, SIDE, SIDE]  # the background map, then the two classes
    assert 0.0 <= result["cam_range"][0] <= result["cam_range"][1] <= 1.0

"""PCC's cluster vector (multi-membership) and cluster token (eq. 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.cams.methods.pcc.clusters import ClusterToken, membership_matrix, with_cluster_token
from pipeline.cams.patch_classifier import top_k_pool

CLASSES = ("cat", "dog", "car")


def write_clusters(path: Path, membership: dict) -> Path:
    path.write_text(json.dumps({"clusters": {}, "membership": membership}))
    return path


def test_cluster_vector_is_the_union_of_the_labelled_classes_clusters(tmp_path: Path) -> None:
    path = write_clusters(tmp_path / "clusters.json",
                          {"cat": ["animal", "pet"], "dog": ["animal", "pet"], "car": ["vehicle"]})  # fmt: skip
    matrix, clusters = membership_matrix(path, CLASSES)
    assert clusters == ("animal", "pet", "vehicle")
    assert matrix.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    token = ClusterToken(matrix, width=4)
    labels = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert token.cluster_vectors(labels).tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 0]]  # 0/1, never 2


def test_cluster_token_is_u_transposed_times_g(tmp_path: Path) -> None:
    path = write_clusters(tmp_path / "clusters.json", {"cat": ["animal"], "dog": ["animal"], "car": ["vehicle"]})
    token = ClusterToken(membership_matrix(path, CLASSES)[0], width=2)
    with torch.no_grad():
        token.mapping.copy_(torch.tensor([[1.0, 2.0], [10.0, 20.0]]))  # G: animal, vehicle
    labels = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 0]])
    assert token(token.cluster_vectors(labels)).tolist() == [[1, 2], [11, 22], [0, 0]]


def test_the_token_is_concatenated_to_every_patch() -> None:
    tokens, cluster = torch.zeros(2, 3, 4, 5), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    widened = with_cluster_token(tokens, cluster)
    assert widened.shape == (2, 3, 4, 7)
    assert torch.equal(widened[1, 2, 3, 5:], cluster[1]) and torch.equal(widened[..., :5], tokens)


def test_a_class_without_a_cluster_is_named(tmp_path: Path) -> None:
    path = write_clusters(tmp_path / "clusters.json", {"cat": ["animal"], "dog": ["animal"]})
    with pytest.raises(ValueError, match=r"clusters\.json: classes without a cluster: \['car'\]"):
        membership_matrix(path, CLASSES)


def test_label_metrics_score_each_class_under_its_own_clusters(tmp_path: Path) -> None:
    """image_scores never sees the labels: class c is scored with u = c's clusters (the hypothesis "c is here")."""
    from pipeline.cams.methods.pcc.model import Pcc
    from pipeline.cams.methods.pcc.params import PccParams
    from pipeline.cams.patch_classifier import score_logits

    path = write_clusters(tmp_path / "clusters.json", {"cat": ["animal"], "dog": ["animal", "pet"], "car": ["thing"]})
    torch.manual_seed(0)
    model = Pcc(PccParams(), membership_matrix(path, CLASSES)[0], pretrained=False).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        scores = model.image_scores(images)
        for c in range(3):
            alone = torch.zeros(2, 3)
            alone[:, c] = 1
            probabilities = model.patch_probabilities(images, alone).flatten(2).transpose(1, 2)
            expected = score_logits(top_k_pool(probabilities, 6))[:, c]
            torch.testing.assert_close(scores[:, c], expected)

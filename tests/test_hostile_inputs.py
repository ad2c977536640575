"""Hostile inputs a user may hand the pipeline, each refused before it can do harm; a list that grows.

Classes covered so far: code execution from a data file (a crafted pickle inside IRN's ``cls_labels.npy``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.data.datasets import read_label_file, read_npy
from pipeline.data.manifest import DatasetError
from pipeline.voc import VOC_CLASSES


class RunsCode:
    """Pickles as a call of ``open(marker, "w")``: unpickling it with ``pickle`` creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "inside-a-label-dict"])
def test_a_crafted_pickle_in_a_label_npy_runs_nothing_and_names_the_file(tmp_path: Path, wrapped: bool) -> None:
    marker = tmp_path / "ran"
    payload = {"2007_000032": RunsCode(marker)} if wrapped else RunsCode(marker)
    path = tmp_path / "cls_labels.npy"
    np.save(path, np.array(payload, dtype=object), allow_pickle=True)
    with pytest.raises(
        DatasetError, match=r"cls_labels\.npy: not a readable \.npy label file .*refused to load io\.open"
    ):
        read_label_file(path, VOC_CLASSES)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the same file through pickle itself: the code runs
    assert marker.exists()


def test_irns_label_dict_and_plain_arrays_still_load(tmp_path: Path) -> None:
    labels = {2007000032: np.eye(20, dtype=np.float32)[0], "2007_000039": np.float32(1.0)}
    np.save(tmp_path / "dict.npy", labels)
    loaded = read_npy(tmp_path / "dict.npy").item()
    assert loaded.keys() == labels.keys() and np.array_equal(loaded[2007000032], labels[2007000032])
    np.save(tmp_path / "plain.npy", np.arange(6).reshape(2, 3))
    assert read_npy(tmp_path / "plain.npy").tolist() == [[0, 1, 2], [3, 4, 5]]

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.cam_store import CamStore


def test_roundtrip_float16_schema_and_plain_zarr_access(tmp_path: Path) -> None:
    store = CamStore.create(tmp_path / "cams.zarr", {"classes": ["a", "b", "c"]})
    rng = np.random.default_rng(0)
    cams = rng.random((2, 30, 40)).astype(np.float32)
    store.write("img1", cams, [0, 2])
    store.finish()
    read, classes = store.read("img1")
    assert classes == [0, 2]
    np.testing.assert_allclose(read, cams, atol=1e-3)
    assert store.ids() == ["img1"]
    assert not store.staging.exists()
    group = zarr.open_group(str(tmp_path / "cams.zarr"), mode="r")
    assert group.attrs["classes"] == ["a", "b", "c"]
    array = group["img1"]
    assert array.dtype == np.float16 and array.chunks == (2, 30, 40)


def test_mismatched_classes_and_missing_image_are_named(tmp_path: Path) -> None:
    store = CamStore.create(tmp_path / "cams.zarr", {})
    with pytest.raises(ValueError, match="img1"):
        store.write("img1", np.zeros((2, 4, 4)), [0])
    with pytest.raises(FileNotFoundError, match="img9"):
        store.read("img9")


def test_work_directory_keeps_matching_work_and_drops_stale(tmp_path: Path) -> None:
    from pipeline.io import publish_directory, work_directory

    target = tmp_path / "seeds"
    old = work_directory(target, "a" * 64)
    old.mkdir()
    other = work_directory(tmp_path / "seeds_refined", "c" * 64)
    other.mkdir()
    same = work_directory(target, "a" * 64)
    assert same == old and old.exists()  # same inputs: resumed
    new = work_directory(target, "b" * 64)
    new.mkdir()
    assert not old.exists() and other.exists()  # other inputs: stale work removed, other outputs untouched
    (new / "x.png").write_bytes(b"1")
    publish_directory(new, target)
    assert (target / "x.png").read_bytes() == b"1" and not new.exists()

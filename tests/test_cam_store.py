from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.cams.store import QUANTUM, CamStore, CamStoreWriter
from pipeline.io import pack_zip


def write_store(tmp_path: Path, images: dict[str, tuple[np.ndarray, list[int]]], attributes: dict) -> Path:
    """Build a CAM store directory and publish it as a zip, as extract_cams does."""
    writer = CamStoreWriter(tmp_path / "work", attributes)
    for image_id, (cams, classes) in images.items():
        writer.write(image_id, cams, classes, attributes.get("background", False))
    writer.finish()
    pack_zip(writer.path, tmp_path / "cams.zarr.zip")
    return tmp_path / "cams.zarr.zip"


def test_roundtrip_float16_schema_and_plain_zarr_access(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cams = rng.random((2, 30, 40)).astype(np.float32)
    path = write_store(tmp_path, {"img1": (cams, [0, 2])}, {"classes": ["a", "b", "c"]})
    store = CamStore(path)
    read, classes = store.read("img1")
    assert classes == [0, 2]
    np.testing.assert_allclose(read, cams, atol=QUANTUM / 2 + 1e-3 * cams.max())
    assert store.ids() == ["img1"]
    assert store.attributes["classes"] == ["a", "b", "c"]
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    array = group["img1"]
    assert array.dtype == np.float16 and array.chunks == (2, 30, 40)
    assert not (tmp_path / ".work.staging").exists()


def test_packing_is_deterministic(tmp_path: Path) -> None:
    cams = np.linspace(0, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    first = write_store(tmp_path / "a", {"x": (cams, [1, 3]), "y": (cams[:1], [0])}, {"k": 1}).read_bytes()
    second = write_store(tmp_path / "b", {"y": (cams[:1], [0]), "x": (cams, [1, 3])}, {"k": 1}).read_bytes()
    assert first == second


def test_mismatched_classes_and_missing_image_are_named(tmp_path: Path) -> None:
    writer = CamStoreWriter(tmp_path / "work", {})
    with pytest.raises(ValueError, match="img1"):
        writer.write("img1", np.zeros((2, 4, 4)), [0])
    path = write_store(tmp_path, {}, {})
    with pytest.raises(FileNotFoundError, match="img9"):
        CamStore(path).read("img9")
    with pytest.raises(FileNotFoundError, match="CAM store not found"):
        CamStore(tmp_path / "missing.zip")


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


def test_saved_models_have_stable_bytes(tmp_path: Path) -> None:
    """torch.save into a file names the archive after the (random) temporary file; write_torch does not."""
    import torch

    from pipeline.io import write_torch

    state = {"state_dict": {"w": torch.arange(4.0)}, "classes": ["a"]}
    write_torch(tmp_path / "a.pt", state)
    write_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]["w"], torch.arange(4.0))


def test_a_background_channel_is_kept_apart_from_the_class_maps(tmp_path: Path) -> None:
    maps = np.stack([np.full((2, 3), 0.25), np.full((2, 3), 0.5), np.full((2, 3), 1.0)]).astype(np.float32)
    store = CamStore(write_store(tmp_path, {"a": (maps, [4, 7])}, {"background": True}))
    cams, classes = store.read("a")
    assert store.has_background and classes == [4, 7] and cams.shape == (2, 2, 3)
    assert cams[:, 0, 0].tolist() == [0.5, 1.0] and store.read_background("a").tolist() == [[0.25] * 3] * 2
    with pytest.raises(ValueError, match="do not match classes \\[4\\] and a background channel"):
        CamStoreWriter(tmp_path / "other", {"background": True}).write("b", maps, [4], background=True)
    plain = CamStore(write_store(tmp_path / "plain", {"a": (maps[1:], [4, 7])}, {}))
    assert not plain.has_background and plain.read_background("a") is None

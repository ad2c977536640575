"""FileTree and LabelSet: a directory and its zip read the same, from any process, and never leave their root."""

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.io import FileTree, LabelSet, UnsafePathError, pack_zip, write_label_png


def tree(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "labels"
    write_label_png(folder / "a.png", np.array([[0, 1], [255, 2]], dtype=np.uint8))
    (folder / "sub").mkdir()
    (folder / "sub" / "note.txt").write_text("hello")
    pack_zip(folder, tmp_path / "labels.zip")
    return folder, tmp_path / "labels.zip"


def read_note(files: FileTree) -> bytes:
    return files.read_bytes("sub/note.txt")


def test_a_directory_and_its_zip_read_the_same(tmp_path: Path) -> None:
    folder, archive = tree(tmp_path)
    for path in (folder, archive):
        files = FileTree(path)
        assert files.is_archive == (path == archive)
        assert files.exists("a.png") and not files.exists("b.png")
        assert files.read_bytes("sub/note.txt") == b"hello"
        assert files.location("sub/note.txt") == path / "sub" / "note.txt"
        with pytest.raises(FileNotFoundError, match=f"{path}/b.png: file not found"):
            files.read_bytes("b.png")
        with pytest.raises(UnsafePathError, match="leads outside"):
            files.read_bytes("../escape.txt")
        labels = LabelSet(path)
        assert labels.read("a", (2, 2)).tolist() == [[0, 1], [255, 2]]
        with pytest.raises(ValueError, match=f"{path}/a.png: label size"):
            labels.read("a", (3, 2))
        with pytest.raises(FileNotFoundError, match=f"{path}/b.png: label missing for image 'b'"):
            labels.read("b", (2, 2))
    with pytest.raises(FileNotFoundError, match="gone.zip: not found"):
        FileTree(tmp_path / "gone.zip").read_bytes("a.png")


def test_an_open_zip_goes_to_worker_processes_by_path(tmp_path: Path) -> None:
    files = FileTree(tree(tmp_path)[1])
    assert read_note(files) == b"hello"  # the zip is open in this process now
    assert pickle.loads(pickle.dumps(files))._archive is None
    with ProcessPoolExecutor(1) as pool:
        assert pool.submit(read_note, files).result() == b"hello"

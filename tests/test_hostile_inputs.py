"""Hostile inputs a user may hand the pipeline, each refused before it can do harm; a list that grows.

Classes covered: code execution from a data file; silent misreads (formats by content, label-file formats, a
missing named file, coerced params); secrets (credentials in params, redaction of every message and log); a
diverged run; escapes (symlinks, path params); execution settings (device, scheduler, dashboard); messages
that name the file, line or key. The planted-secret grep over every output location and the Prefect path of an
expected failure are in tests/test_prefect.py (they need a Prefect server).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import redaction
from pipeline.data.datasets import prepare_dataset, read_label_file, read_npy
from pipeline.data.manifest import DatasetError
from pipeline.input_files import READERS, DigestCache
from pipeline.io import UnsafePathError, atomic_path, read_label_png
from pipeline.params import DataParams, ParamsError, PipelineParams, validate_params
from pipeline.redaction import redact
from pipeline.schema import read_yaml
from pipeline.voc import VOC_CLASSES
from tests.conftest import dvc, edit_params, run
from tests.test_datasets import make_voc, voc_params


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


def test_a_crafted_sam_checkpoint_runs_nothing_and_a_wrong_model_type_is_named(tmp_path: Path) -> None:
    """segment-anything's own loader calls ``torch.load`` without ``weights_only``; ours never unpickles code."""
    import torch
    from segment_anything import sam_model_registry

    from pipeline.proposals.sam import load_sam

    marker, checkpoint = tmp_path / "ran", tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.pos_embed": RunsCode(marker)}, checkpoint)
    with pytest.raises(ValueError, match=r"sam_vit_b_01ec64\.pth: not a SAM state dict loadable without running"):
        load_sam("vit_b", checkpoint, torch.device("cpu"))
    assert not marker.exists()
    state = sam_model_registry["vit_b"]().state_dict()  # SAM's .pth format, random weights
    torch.save({key: value for key, value in state.items() if not key.startswith("mask_decoder.")}, checkpoint)
    with pytest.raises(ValueError, match=r"does not fit SAM vit_b \(\d+ weights missing, e\.g\. \['mask_decoder"):
        load_sam("vit_b", checkpoint, torch.device("cpu"))
    torch.save(state, checkpoint)
    assert load_sam("vit_b", checkpoint, torch.device("cpu")).image_encoder.pos_embed.shape[-1] == 768


# --- silent misreads ---------------------------------------------------------------------------------------
IDS = ["2007_000001", "2007_000002", "2007_000003"]  # make_voc: one class each, 0 (aeroplane), 1, 2


def test_a_jpeg_saved_as_a_png_mask_is_refused_by_its_content(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    mask = root / "SegmentationClassAug/2007_000002.png"
    Image.fromarray(read_label_png(mask)).save(mask, format="JPEG")  # grey values [0…15] once read as a mask
    with pytest.raises(DatasetError, match=rf"{mask.resolve()}: .*must be PNG files .*this file is a JPEG"):
        prepare_dataset(voc_params(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_one_hot_vector_with_a_background_column_is_read_as_such(tmp_path: Path) -> None:
    """21 entries, background first: not the indices [0, 1] (aeroplane, bicycle) for every image."""
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    vectors = {image_id: [1] + [int(c == i) for c in range(20)] for i, image_id in enumerate(IDS)}
    (root / "cls_labels.json").write_text(json.dumps(vectors))
    manifest = prepare_dataset(voc_params(root, label_file="cls_labels.json"), tmp_path / "out")
    assert manifest.labels["label_format"] == "onehot_background"
    assert [e.labels for e in manifest.entries("train")] == [(0,), (1,)]
    assert manifest.entries("val")[0].labels == (2,)


def test_a_label_file_that_does_not_exist_is_an_error_not_labels_from_masks(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    (root / "cls_labels.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"cls_lables\.json: label file not found .*null takes the labels"):
        prepare_dataset(voc_params(root, label_file="cls_lables.json"), tmp_path / "out")  # a typo


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("segmenter: {epochs: true}", r"segmenter\.epochs: Input should be a valid integer, got the boolean true"),
        ("segmenter: {epochs: '3'}", r"segmenter\.epochs: Input should be a valid integer, got the text '3'"),
        ("segmenter: {epochs: 3.0}", r"segmenter\.epochs: Input should be a valid integer"),
        ("segmenter: {lr: .nan}", r"segmenter\.lr: Input should be a finite number"),
        ("segmenter: {lr: .inf}", r"segmenter\.lr: Input should be a finite number"),
        ("cam: {cam: {training: {lr: -.inf}}}", r"cam\.cam\.training\.lr: Input should be a finite number"),
        ("seed: yes", r"seed: Input should be a valid integer, got the boolean true"),
    ],
)
def test_params_are_not_coerced(text: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        validate_params(read_yaml(text), "params.yaml")


def test_numbers_are_read_as_dvc_writes_them() -> None:
    """``dvc exp run -S segmenter.lr=1e-06`` writes ``1e-06`` (YAML 1.2), which PyYAML alone reads as text."""
    params = validate_params(read_yaml("segmenter: {lr: 1e-06}\ncam: {cam: {training: {lr: 2E+1}}}"), "p")
    assert params.segmenter.lr == 1e-06 and params.cam.cam.training.lr == 20.0


# --- secrets -----------------------------------------------------------------------------------------------
PLANTED = "sk-planted-DO-NOT-STORE-5150"


def test_credentials_in_the_llm_url_are_refused_without_echoing_them() -> None:
    raw = {"vocab": {"openai": {"base_url": f"https://user:{PLANTED}@llm.example.org/v1"}}}
    with pytest.raises(ParamsError, match=r"vocab\.openai\.base_url: .*https://\*\*\*@llm.* api_key_env") as error:
        validate_params(raw, "params.yaml")
    assert PLANTED not in str(error.value)
    with pytest.raises(ParamsError, match=r"base_url: .*no query"):
        validate_params({"vocab": {"openai": {"base_url": f"https://llm.example.org/v1?key={PLANTED}"}}}, "p")


def test_secret_values_are_redacted_from_messages_and_every_log_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    monkeypatch.setenv("MY_LLM_CREDENTIAL", "another-secret-value")  # any name, once the code reading it says so
    redaction.register_secret("MY_LLM_CREDENTIAL")
    assert redact(f"401: bad key {PLANTED}; another-secret-value; http://u:p@host/x") == "401: bad key ***; ***; http://***@host/x"
    redaction.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("hostile-test")
    logger.addHandler(handler)
    try:
        logger.warning("server said %s", PLANTED)
        try:
            raise ValueError(f"echoed {PLANTED}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert PLANTED not in stream.getvalue() and stream.getvalue().count("***") == 2  # the message, the exception


# --- a diverged run ----------------------------------------------------------------------------------------
def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    import torch

    from pipeline.trainer import TrainingDiverged, run_epochs

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [torch.ones(1, 2)] * 2

    def step(batch):
        value = model(batch).sum() * (float("nan") if step.calls >= 3 else 1.0)
        step.calls += 1
        return {"ce": value}, 1

    step.calls = 0
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(TrainingDiverged, match=rf"the loss is not finite in epoch 2 \(ce nan\); lower the learning "
                                               rf"rate .*checkpoint of epoch 1 stays at {checkpoint}"):
        run_epochs("train_x", model, optimizer, scheduler, lambda epoch: batches, step, 3, 0, checkpoint)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1


def test_a_diverging_stage_exits_non_zero_with_one_line(project: Path) -> None:
    edit_params(project, lambda p: p["segmenter"].update(lr=1.0e30))
    dvc(project, "repro", "prepare_data")
    result = run([sys.executable, "-m", "stages.train_segmenter_fullsup"], project, check=False)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [line for line in errors if line.startswith("train_segmenter_fullsup: error: train_")]
    assert len(errors) == 1 and "the loss is not finite" in errors[0] and "Traceback" not in result.stderr


# --- escapes -----------------------------------------------------------------------------------------------
def test_a_symlink_out_of_the_dataset_root_is_refused_unless_followed(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    outside = tmp_path / "elsewhere.png"
    mask = root / "SegmentationClassAug/2007_000002.png"
    mask.rename(outside)
    mask.symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"2007_000002\.png: a symbolic link leads outside .*data\.symlinks"):
        prepare_dataset(voc_params(root), tmp_path / "out")
    assert str(outside) not in map(str, READERS["prepare_data"](
        PipelineParams(data=voc_params(root)), DigestCache(tmp_path / "cache.json")))  # fmt: skip
    followed = prepare_dataset(DataParams(source="voc", symlinks="follow", voc={"root": str(root)}), tmp_path / "o")
    assert [e.labels for e in followed.entries("train")] == [(0,), (1,)]
    inner = root / "JPEGImages/2007_000001.jpg"  # a link that stays inside the root is fine
    (root / "copy.jpg").write_bytes(inner.read_bytes())
    inner.unlink()
    inner.symlink_to(root / "copy.jpg")
    mask.unlink()
    outside.rename(mask)
    assert len(prepare_dataset(voc_params(root), tmp_path / "out").entries("train")) == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [("vocab.cache_dir", "../llm-cache"), ("vocab.file.synonyms", "/etc/passwd"), ("data.voc.mask_dir", "a/../.."),
     ("vocab.embedding.vocabulary_file", "../../words.txt"), ("data.coco.label_file", "../labels.json")],
)  # fmt: skip
def test_path_params_stay_inside_their_root_and_the_key_is_named(key: str, value: str) -> None:
    raw: dict = {}
    *sections, leaf = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value
    with pytest.raises(ParamsError, match=rf"{re.escape(key)}: Value error, path '{re.escape(value)}' leads outside"):
        validate_params(raw, "params.yaml")


# --- the execution settings --------------------------------------------------------------------------------
def test_a_device_name_is_checked_by_check_params(project: Path) -> None:
    edit_params(project, lambda p: p.update(device="gpu"))
    result = run([sys.executable, "-m", "stages.check_params"], project, check=False)
    assert result.returncode == 1 and "device: String should match pattern" in result.stderr
    if not torch_cuda_available():
        edit_params(project, lambda p: p.update(device="cuda"))
        result = run([sys.executable, "-m", "stages.check_params"], project, check=False)
        assert result.returncode == 1
        assert "device: 'cuda' was requested but CUDA is not available" in result.stderr


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_a_scheduler_that_does_not_answer_fails_naming_the_runner() -> None:
    from pipeline.execution.chunks import dask_client
    from pipeline.execution.params import ExecutionParams

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
    expected = rf"execution\.runner: no Dask scheduler answered at {address} within 1 s"
    with pytest.raises(OSError, match=expected), dask_client(ExecutionParams(runner=address, connect_timeout=1.0)):
        pass


def test_a_local_cluster_serves_no_dashboard() -> None:
    import httpx

    from pipeline.execution.chunks import dask_client
    from pipeline.execution.params import ExecutionParams

    with dask_client(ExecutionParams(runner="local", workers=1)) as client:
        server = client.cluster.scheduler.http_server
        assert server.port != 8787
        for path in ("/status", "/health", "/metrics"):
            assert httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5).status_code == 404


# --- messages ----------------------------------------------------------------------------------------------
def test_a_byte_order_mark_in_a_list_is_read_and_a_missing_file_names_its_list_line(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    listing = root / "ImageSets/Segmentation/train_aug.txt"
    listing.write_bytes(b"\xef\xbb\xbf2007_000001\r\n2007_000002\r\n")  # saved by a Windows editor
    assert [e.id for e in prepare_dataset(voc_params(root), tmp_path / "out").entries("train")] == IDS[:2]
    (root / "JPEGImages/2007_000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"2007_000002\.jpg: image file not found \(listed in .*train_aug\.txt:2\)"):
        prepare_dataset(voc_params(root), tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/JPEGImages/2007_000001.jpg /SegmentationClassAug/2007_000001.png\n", r":1: .*DeepLab-style list"),
        ("2007_000001\n2007_000002\u20282007_000001\n", r":2: .*invisible character U\+2028"),  # not "listed twice"
    ],
    ids=["deeplab-two-columns", "line-separator-in-an-id"],
)
def test_a_bad_list_line_is_named_with_what_to_do(tmp_path: Path, text: str, message: str) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, IDS)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text(text)
    with pytest.raises(DatasetError, match=rf"train_aug\.txt{message}"):
        prepare_dataset(voc_params(root), tmp_path / "out")


def test_a_full_disk_names_the_file_being_written(tmp_path: Path) -> None:
    target = tmp_path / "out/labels.json"
    disk_full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises: no file name
    with pytest.raises(OSError, match=rf"No space left on device \(writing {target}\)") as error, atomic_path(target):
        raise disk_full
    assert error.value.filename == str(target)
    assert not list(target.parent.iterdir())  # no partial file left

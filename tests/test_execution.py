"""The chunked per-image runner: chunks, resume, per-image failures, a local Dask cluster and a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline.data.datasets import prepare_dataset
from pipeline.execution.chunks import ImageJob, chunked, gpu_resources, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.params import DataParams, ProposalParams
from pipeline.proposals import generate_proposals


class SquareJob(ImageJob):
    """Writes the square of an id's number; ids named ``bad-*`` fail as corrupt input would."""

    def load(self) -> None:
        self.loads = getattr(self, "loads", 0) + 1

    def done(self, image_id: str) -> bool:
        return (self.work / image_id).exists()

    def compute(self, image_id: str) -> None:
        if image_id.startswith("bad"):
            raise ValueError(f"{self.work / image_id}: corrupt input")
        (self.work / image_id).write_text(str(int(image_id.split("-")[1]) ** 2))


def test_execution_params_accept_runners_and_addresses() -> None:
    assert not ExecutionParams().uses_dask
    assert ExecutionParams(runner="tcp://10.0.0.5:8786").uses_dask
    with pytest.raises(ValueError, match="runner 'slurm'"):
        ExecutionParams(runner="slurm")
    assert chunked(["a", "b", "c"], 2) == [["a", "b"], ["c"]]


def test_in_process_run_resumes_and_names_every_failed_image_after_the_others(tmp_path: Path) -> None:
    ids = [f"img-{i}" for i in range(7)]
    job = SquareJob("key", tmp_path)
    (tmp_path / "img-2").write_text("4")  # left by a killed run
    counts = run_images("squares", job, ids, ExecutionParams(chunk_size=3))
    assert counts == {"images": 7, "computed": 6, "resumed": 1, "recovered": 0, "recomputed": 0}
    assert (tmp_path / "img-6").read_text() == "36" and job.loads == 1  # loaded once for the three chunks
    failing = SquareJob("other", tmp_path / "second")
    with pytest.raises(ValueError, match=r"squares: 2 image\(s\) failed.*bad-1: corrupt input; .*bad-4: corrupt"):
        ids = ["img-0", "bad-1", "img-2", "img-3", "bad-4", "img-5"]
        run_images("squares", failing, ids, ExecutionParams(chunk_size=2))
    assert sorted(p.name for p in (tmp_path / "second").iterdir() if not p.name.startswith(".")) == [
        "img-0", "img-2", "img-3", "img-5"]  # fmt: skip


class PairedSquareJob(SquareJob):
    """Computes images two at a time, failing the pair when either is bad (as a batch's image read would)."""

    def groups(self, image_ids: list[str]) -> list[list[str]]:
        return chunked(image_ids, 2)

    def compute_group(self, image_ids: list[str]) -> None:
        self.group_sizes = [*getattr(self, "group_sizes", []), len(image_ids)]
        if any(image_id.startswith("bad") for image_id in image_ids):
            raise ValueError(f"{self.work / next(i for i in image_ids if i.startswith('bad'))}: corrupt input")
        for image_id in image_ids:
            self.compute(image_id)


def test_a_group_broken_by_one_image_is_computed_image_by_image(tmp_path: Path) -> None:
    """Batched work (CAM extraction's ``batch_size``): a bad image fails alone, named; its partner is computed."""
    job = PairedSquareJob("key", tmp_path)
    (tmp_path / "img-0").write_text("0")  # done by a killed run: not computed again
    with pytest.raises(ValueError, match=r"squares: 1 image\(s\) failed.*bad-2: corrupt input"):
        run_images("squares", job, ["img-0", "img-1", "bad-2", "img-3", "img-4"], ExecutionParams(chunk_size=5))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "img-0", "img-1", "img-3", "img-4"]  # fmt: skip
    assert job.group_sizes == [2, 1, 1, 2]  # (img-1, bad-2) failed, then each alone; (img-3, img-4) together


class FakeClient:
    def __init__(self, *resources: dict) -> None:
        self.workers = {f"tcp://w{i}": {"resources": r} for i, r in enumerate(resources)}

    def scheduler_info(self) -> dict:
        return {"workers": self.workers}


def test_gpu_stages_ask_for_a_gpu_only_where_workers_advertise_one() -> None:
    assert gpu_resources(FakeClient({}, {})) is None  # a CPU cluster: no resource to wait for forever
    assert gpu_resources(FakeClient({"GPU": 1}, {})) == {"GPU": 1}  # dask cuda worker --resources GPU=1


def tiny_dataset(tmp_path: Path, count: int, size: int):
    params = DataParams.model_validate({"synthetic": {"num_train": count, "num_val": 2, "image_size": size}})
    return prepare_dataset(params, tmp_path / "dataset")


def kill_a_worker_when(work_root: Path, images: int, killed: list[int]) -> None:
    """SIGKILL one Dask worker process once ``images`` images are in the work directory."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # a process may exit, a work folder be renamed, between listing and reading it: look again
            works = list(work_root.glob("*")) if work_root.is_dir() else []
            done = sum(1 for work in works for p in work.iterdir() if p.is_dir())
            workers = [child for child in psutil.Process().children(recursive=True)
                       if "spawn_main" in " ".join(child.cmdline())]  # fmt: skip
        except (psutil.Error, OSError):
            continue
        if done >= images and workers:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)
            return
        time.sleep(0.02)


def test_a_killed_worker_loses_no_finished_image_and_the_store_is_identical(tmp_path: Path) -> None:
    manifest = tiny_dataset(tmp_path, 30, 160)
    params = ProposalParams()
    serial = tmp_path / "serial" / "proposals.zarr.zip"
    generate_proposals(manifest, tmp_path / "dataset", params, "cpu", serial, ExecutionParams())

    out = tmp_path / "cluster" / "proposals.zarr.zip"
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_worker_when, args=(out.parent / ".work", 8, killed))
    killer.start()
    counts = generate_proposals(manifest, tmp_path / "dataset", params, "cpu", out,
                                ExecutionParams(runner="local", workers=2, chunk_size=4))  # fmt: skip
    killer.join()
    assert killed, "no worker was killed: the run ended first"
    assert out.read_bytes() == serial.read_bytes()
    assert counts["images"] == 32 and counts["recomputed"] == 0  # no image written twice
    assert counts["computed"] + counts["recovered"] == 32  # the killed chunk's finished images are kept


def test_dataloader_workers_make_the_crops_of_a_single_threaded_main_process(tmp_path: Path) -> None:
    """``loader_workers`` processes draw the same crops (order in the main process, augmentation seeded per
    sample) and compute them on one thread each: the bytes of the main process on one thread. On several
    threads torch's resampling rounds differently, which is why the training stages track the setting."""
    import torch

    from pipeline.data.loading import ClassificationDataset
    from pipeline.device import TrainingRuntime, loader_options
    from pipeline.trainer import EpochLoader

    manifest = prepare_dataset(DataParams(synthetic={"num_train": 12, "num_val": 2, "image_size": 96}), tmp_path / "d")
    dataset = ClassificationDataset(manifest, "train", 64, (0.7, 1.3), seed=3)
    assert loader_options(None, torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}
    assert loader_options(None, torch.device("cuda"))["pin_memory"]
    batches, threads = {}, torch.get_num_threads()
    for workers in (0, 2):
        loader = EpochLoader(dataset, 4, seed=3, runtime=TrainingRuntime(loader_options(workers, torch.device("cpu"))))
        torch.set_num_threads(1)
        try:
            batches[workers] = [[part.clone() for part in batch] for epoch in (0, 1) for batch in loader(epoch)]
        finally:
            torch.set_num_threads(threads)
    assert len(batches[0]) == 6
    for plain, parallel in zip(batches[0], batches[2], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(plain, parallel, strict=True))
    assert TrainingRuntime(loader_options(2, torch.device("cpu")), "bf16").key_settings() == {
        "precision": "bf16", "loader_workers": 2}  # a checkpoint resumes only under the same settings
    assert TrainingRuntime().key_settings() == {}  # fp32 without workers: the work keys of before


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_precision_autocasts_the_step_and_keeps_fp32_weights(tmp_path: Path, precision: str) -> None:
    """``precision: bf16 | fp16`` runs each training step under autocast (fp16 with a gradient scaler, saved in
    the checkpoint for a resume); the weights and the optimiser stay fp32."""
    import torch

    from pipeline.device import PRECISIONS, TrainingRuntime
    from pipeline.trainer import run_epochs

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    seen = []

    def step(batch):
        output = model(batch)
        seen.append(output.dtype)
        return {"mse": output.float().pow(2).mean()}, len(batch)

    runtime = TrainingRuntime(precision=precision)
    history = run_epochs("train_x", model, optimizer, scheduler, lambda epoch: [torch.ones(3, 4)] * 2, step, 2, 0,
                         tmp_path / "checkpoint.pt", runtime=runtime)  # fmt: skip
    assert set(seen) == {PRECISIONS[precision]} and len(history) == 2
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)
    scaler = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (precision == "fp16")  # the scale factor and its growth tracker, for a resume


def test_the_training_runtime_benchmark_runs_at_tiny_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/training_runtime.py`` works on CPU before any GPU is at hand."""
    from benchmarks.training_runtime import SETTINGS, main

    main(images=8, size=48, rounds=1)
    printed = capsys.readouterr().out
    assert all(f"  {name}: " in printed for name in SETTINGS) and "ratio to fp32, 0 workers 1.00" in printed
    assert "learned weights with 0 and 1 loader workers differ by at most" in printed

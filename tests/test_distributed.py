"""Data-parallel training on two CPU processes (gloo): every CAM method, the segmenter and IRN; the data order
of one process; a killed process resumed from, on two processes or one; monitoring relayed to Prefect; the
DVC cache untouched by ``execution.training`` (tests/test_dvc_pipeline.py). World size 1 is today's code path,
byte for byte: every other test runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.device import TrainingRuntime
from pipeline.execution.world import WORKER_ENV, World, current_world
from pipeline.trainer import EpochLoader, epoch_seed
from tests.conftest import REPO, edit_params, free_port, project_env, run
from tests.distributed_methods import main as train_methods
from tests.test_cam_contract import vocab_outputs  # noqa: F401 - the methods' inputs in the test's folder

# One process computes the same gradient as two where a method's losses are means over images, its network has
# no BatchNorm in training mode (on the CPU each process normalises its own part; SyncBatchNorm needs CUDA) and
# no loss compares the images of a batch with each other: plain CAM on a ViT, FMA (its double backward through
# GradCAM) and USAGE on a ViT (its EMA teacher and learning status). The others differ by design: BatchNorm
# (the ResNet methods: CAM, CLIMS, POLE, USAGE; APC's decoder) or batch-wide losses (APC's and PCC's contrast,
# FMA's MCL).
SAME_GRADIENT = ("cam-vit", "fma-only", "usage-vit")


def torchrun(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m <module> args`` on two processes started by torchrun (they join by its variables)."""
    env = {**project_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), "-m", module, *args]  # fmt: skip
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def test_every_cam_method_trains_an_epoch_on_two_processes(tmp_path: Path) -> None:
    torchrun("tests.distributed_methods", str(tmp_path / "two"), cwd=tmp_path)
    train_methods(tmp_path / "one")
    runs = sorted(path.name for path in (tmp_path / "one").glob("*-rank0.pt"))
    assert len(runs) == 10  # every method that trains (not CLIP-ES)
    for name in runs:
        one, rank0, rank1 = (torch.load(path, weights_only=True) for path in (
            tmp_path / "one" / name, tmp_path / "two" / name, tmp_path / "two" / name.replace("rank0", "rank1")))
        assert rank0["history"] == rank1["history"], name  # both log the whole batch's losses
        for key, value in rank0["state"].items():  # DDP keeps the processes' weights (and EMA teacher) equal;
            if "running_" not in key:  # BatchNorm statistics are each process's own on the CPU
                assert torch.equal(value, rank1["state"][key]), f"{name}: {key} differs between the processes"
        method = name.removesuffix("-rank0.pt")
        losses = rank0["history"][0]  # the epoch's
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), name
        if method in SAME_GRADIENT:
            # USAGE's student draws its drop-path masks per process: its regulariser moves in the 3rd digit
            assert losses == pytest.approx(one["history"][0], rel=5e-3), name
            for key, value in one["state"].items():
                if value.is_floating_point():
                    torch.testing.assert_close(rank0["state"][key], value, atol=1e-4, rtol=1e-3, msg=f"{name}: {key}")
    learning_status = [torch.load(tmp_path / "two" / f"usage-vit-rank{r}.pt", weights_only=True)["state"]
                       ["learning_status"] for r in (0, 1)]  # fmt: skip
    assert learning_status[0] == learning_status[1] != 0.5  # the whole batch's score on both


class Indices(torch.utils.data.Dataset):
    def __init__(self, count: int) -> None:
        self.count, self.epoch = count, 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.parametrize("count", [23, 24, 5])
def test_the_processes_batches_at_a_step_are_the_one_process_batch(count: int) -> None:
    dataset, batch = Indices(count), 8
    one = EpochLoader(dataset, batch, seed=3)
    processes = [EpochLoader(dataset, batch, 3, TrainingRuntime(world=World(rank, 4))) for rank in range(4)]
    assert {loader.batches for loader in processes} == {one.batches}
    for epoch in (0, 1):
        expected = [sorted(b.tolist()) for b in one(epoch)]
        parts = [[b.tolist() for b in loader(epoch)] for loader in processes]
        together = [sorted(i for part in parts for i in part[step]) for step in range(len(parts[0]))]
        if count >= batch:
            assert together == expected
        else:  # one step an epoch: each process takes count // 4 of the same permutation
            assert len(together) == 1 and set(together[0]) <= set(expected[0]) and len(together[0]) == 4
    drawn = DataLoader(dataset, batch, shuffle=True, generator=torch.Generator().manual_seed(epoch_seed(3, 1)))
    assert [b.tolist() for b in drawn][0] == [b.tolist() for b in one(1)][0]


def test_a_process_knows_its_rank_from_torchrun_or_from_slurm_under_its_launcher(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", WORKER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert current_world() == World()  # a batch script's own variables: not a training process
    monkeypatch.setenv(WORKER_ENV, "1")
    assert current_world() == World(5, 8, 1)  # started by execution.training.launcher (srun)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert current_world() == World(2, 4, 0)  # torchrun's variables first


def test_a_batch_that_does_not_split_over_the_processes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch size 6 does not split over 4 processes \(execution.training"):
        EpochLoader(Indices(24), 6, 0, TrainingRuntime(world=World(0, 4)))


def processes(count: int, **segmenter: object):
    def change(params: dict) -> None:
        params["execution"]["training"]["processes"] = count
        params["segmenter"].update(segmenter)

    return change


def stage(project: Path, name: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"stages.{name}"], project, env=env)


def kill_a_process(project: Path, rank: int) -> subprocess.CompletedProcess:
    """Start train_segmenter on two processes; SIGKILL the process of ``rank`` once the first epoch is
    checkpointed; the stage's result."""
    import psutil

    stage_process = subprocess.Popen([sys.executable, "-m", "stages.train_segmenter"], cwd=project,
                                     env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 300, False
    while stage_process.poll() is None and time.monotonic() < deadline and not killed:
        if list((project / "artifacts" / ".work").glob("segmenter-*/checkpoint.pt")):
            for child in psutil.Process(stage_process.pid).children():
                if child.environ().get("RANK") == str(rank):
                    os.kill(child.pid, signal.SIGKILL)
                    killed = True
        time.sleep(0.02)
    stdout, stderr = stage_process.communicate(timeout=120)
    assert killed, stdout + stderr
    return subprocess.CompletedProcess(stage_process.args, stage_process.returncode, stdout, stderr)


def test_segmenter_and_irn_train_on_two_processes_and_resume_after_a_kill(reproduced_project: Path) -> None:
    """Started by their stage, under bf16 autocast (mixed precision under DDP): the segmenter's processes on
    this machine, IRN's by a launcher command (a stand-in for srun: the ranks from SLURM's variables, the
    rendezvous at MASTER_ADDR); every process's lines relayed tagged with its rank, rank 0 alone logging epochs
    and writing; then rank 0 SIGKILLed, its checkpoint resumed from on two processes (the same bytes) and on
    one. (The launcher's account of a killed process does not depend on its rank.)"""
    project = reproduced_project
    edit_params(project, processes(2, epochs=2))
    edit_params(project, lambda p: p["refine"].update(method="irn"))
    edit_params(project, lambda p: p.update(precision="bf16"))
    srun = f"{sys.executable} {REPO / 'tests/fake_srun.py'} --ntasks=2"
    for name, out, launcher in (("train_segmenter", "segmenter", ""), ("train_irn", "irn", srun)):
        edit_params(project, lambda p, launcher=launcher: p["execution"]["training"].update(launcher=launcher))
        result = stage(project, name, env={**project_env(), "MASTER_ADDR": "127.0.0.1"})
        output = result.stdout + result.stderr
        started = f"with `{launcher} " if launcher else "on this machine"
        assert f"{name}: starting 2 training processes {started}" in output
        assert f"[rank 1] {name}: rank 1 of 2 processes on cpu" in output
        assert output.count(f"{name}: epoch 1/") == 1, output  # rank 0 logs the epochs
        metrics = json.loads((project / "artifacts" / out / "metrics.json").read_text())
        assert metrics["processes"] == 2 and metrics["precision"] == "bf16" and metrics["train_loss"] > 0
        assert (project / "artifacts" / out / "live").is_dir()
    assert not (project / "artifacts" / ".work").exists()
    edit_params(project, lambda p: p["execution"]["training"].update(launcher=""))
    model = project / "artifacts/segmenter/model.pt"
    uninterrupted = model.read_bytes()
    model.unlink()

    failed = kill_a_process(project, rank=0)  # the process that writes
    assert failed.returncode == 1
    assert "the training process of rank 0 was killed by signal 9" in failed.stderr
    assert "rerun to resume" in failed.stderr and "Traceback" not in failed.stderr
    (work,) = (project / "artifacts/.work").glob("segmenter-*")
    shutil.copytree(work, project / "kept")
    resumed = stage(project, "train_segmenter")
    assert "train_segmenter: resuming after epoch 1/2" in resumed.stdout + resumed.stderr
    assert model.read_bytes() == uninterrupted  # the same number of processes: the same bytes

    shutil.copytree(project / "kept", work)  # the same checkpoint, resumed on one process
    edit_params(project, processes(1))
    on_one = stage(project, "train_segmenter")
    assert "train_segmenter: resuming after epoch 1/2" in on_one.stdout + on_one.stderr
    metrics = json.loads((project / "artifacts/segmenter/metrics.json").read_text())
    assert "processes" not in metrics and metrics["epochs"] == 2

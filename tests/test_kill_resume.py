"""SIGKILL extract_cams / sam_masks / segmenter training halfway, rerun, and compare with an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cams.store import CamStore
from tests.conftest import dvc, edit_params, project_env, run


def stored_images(project: Path, store_name: str = "cams.zarr.zip") -> int:
    work = project / "artifacts" / ".work"
    return sum(
        1
        for store in work.glob(f"{store_name}-*")
        for p in store.iterdir()
        if (p / "zarr.json").is_file() and p.is_dir()
    )


def kill_when(project: Path, stage: str, ready) -> None:
    """Start ``python -m stages.<stage>``, SIGKILL its whole process group once ``ready()`` holds."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=project_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_extract_cams_resumes_to_an_identical_store(project: Path) -> None:
    edit_params(project, lambda p: p["data"]["synthetic"].update(num_train=60, image_size=64))
    dvc(project, "repro", "prepare_data")
    run([sys.executable, "-m", "stages.train_classifier"], project)
    run([sys.executable, "-m", "stages.extract_cams"], project)
    store = project / "artifacts/cams.zarr.zip"
    reference = store.read_bytes()
    assert len(CamStore(store).ids()) == 60
    store.unlink()

    kill_when(project, "extract_cams", lambda: stored_images(project) >= 30)
    done_before_kill = stored_images(project)
    assert 0 < done_before_kill < 60, "the kill must land halfway"
    assert not store.exists()

    resumed = run([sys.executable, "-m", "stages.extract_cams"], project)
    assert f"| 60 | {60 - done_before_kill} | {done_before_kill} |" in resumed.stderr + resumed.stdout
    assert store.read_bytes() == reference
    assert not (project / "artifacts/.work").exists()


def test_killed_sam_masks_resumes_to_an_identical_store(project: Path) -> None:
    edit_params(project, lambda p: p["data"]["synthetic"].update(num_train=160, num_val=8, image_size=64))
    dvc(project, "repro", "prepare_data")
    run([sys.executable, "-m", "stages.sam_masks"], project)
    store = project / "artifacts/proposals.zarr.zip"
    reference = store.read_bytes()
    store.unlink()

    # The whole process group goes (the stage and its worker processes), as with a killed job.
    kill_when(project, "sam_masks", lambda: stored_images(project, "proposals.zarr.zip") >= 40)
    done_before_kill = stored_images(project, "proposals.zarr.zip")
    assert 0 < done_before_kill < 168, "the kill must land halfway"
    assert not store.exists()

    resumed = run([sys.executable, "-m", "stages.sam_masks"], project)
    assert f"| 168 | {168 - done_before_kill} | {done_before_kill} |" in resumed.stderr + resumed.stdout
    assert store.read_bytes() == reference
    assert not (project / "artifacts/.work").exists()


def assert_training_resumes(project: Path, stage: str, out: str, epochs: int) -> str:
    """Run ``stage``; then SIGKILL a fresh run after an epoch checkpoint and rerun it: the resumed run must end
    with the same weights and loss history. Returns the loss history (CSV)."""
    import torch

    command = [sys.executable, "-m", f"stages.{stage}"]
    run(command, project)
    model, losses = project / out / "model.pt", project / out / "loss.csv"
    reference, reference_loss = torch.load(model, weights_only=True)["state_dict"], losses.read_text()
    curves = project / out / "live"
    reference_curves = {str(p.relative_to(curves)): p.read_bytes() for p in curves.rglob("*") if p.is_file()}
    assert "plots/metrics/train/loss.tsv" in reference_curves
    model.unlink()

    work = project / "artifacts/.work"
    checkpoints = f"{Path(out).name}-*/checkpoint.pt"
    kill_when(project, stage, lambda: any(work.glob(checkpoints)))
    epoch = torch.load(next(work.glob(checkpoints)), weights_only=True)["epoch"]
    assert 1 <= epoch < epochs, "the kill must land between checkpoints"
    assert not model.exists()

    resumed = run(command, project)
    assert f"resuming after epoch {epoch}/{epochs}" in resumed.stderr + resumed.stdout
    state = torch.load(model, weights_only=True)["state_dict"]
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert losses.read_text() == reference_loss
    assert {str(p.relative_to(curves)): p.read_bytes() for p in curves.rglob("*") if p.is_file()} == reference_curves
    assert not work.exists()
    return reference_loss


def test_killed_segmenter_training_resumes_from_its_last_checkpoint(project: Path) -> None:
    edit_params(project, lambda p: p["segmenter"].update(epochs=4))
    dvc(project, "repro", "prepare_data")
    assert_training_resumes(project, "train_segmenter_fullsup", "artifacts/segmenter_fullsup", 4)


LOSS_TERMS = {"cam": "classification", "usage": "generation,regularisation",
              "apc": "classification,segmentation,contrast", "pcc": "classification"}  # fmt: skip
FIRST_STAGES = {"pcc": ["vocab"]}  # what each reads (and, through DVC, what those read)


@pytest.mark.parametrize(
    ("method", "backbone"),
    # CLIMS's resume (a frozen CLIP, a first phase) is POLE's, which extends it: test_dvc_pipeline
    [("cam", "resnet"), ("usage", "vit"), ("apc", None), ("pcc", None)],
)
def test_killed_classifier_training_resumes_to_the_same_weights_and_losses(
    project: Path, method: str, backbone: str | None
) -> None:  # fmt: skip
    def select(p: dict) -> None:
        p["cam"]["method"] = method
        if backbone:
            p["cam"][method].update(backbone=backbone)
        p["cam"][method]["training"].update(epochs=3, batch_size=8, crop_size=48)

    edit_params(project, select)
    dvc(project, "repro", "prepare_data", *FIRST_STAGES.get(method, []))
    losses = assert_training_resumes(project, "train_classifier", "artifacts/classifier", 3)
    assert losses.splitlines()[0] == f"epoch,loss,{LOSS_TERMS[method]},val_exact_match,val_f1_macro,val_mAP"

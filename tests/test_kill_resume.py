"""SIGKILL extract_cams / sam_masks halfway, rerun them, and compare each store with an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.cam_store import CamStore
from tests.conftest import dvc, edit_params, project_env, run


def stored_images(project: Path, store_name: str = "cams.zarr.zip") -> int:
    work = project / "artifacts" / ".work"
    return sum(
        1
        for store in work.glob(f"{store_name}-*")
        for p in store.iterdir()
        if (p / "zarr.json").is_file() and p.is_dir()
    )


def test_killed_extract_cams_resumes_to_an_identical_store(project: Path) -> None:
    edit_params(project, lambda p: p["data"]["synthetic"].update(num_train=60, image_size=64))
    dvc(project, "repro", "train_classifier")
    run([sys.executable, "-m", "stages.extract_cams"], project)
    store = project / "artifacts/cams.zarr.zip"
    reference = store.read_bytes()
    assert len(CamStore(store).ids()) == 60
    store.unlink()

    process = subprocess.Popen(
        [sys.executable, "-m", "stages.extract_cams"], cwd=project, env=project_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while stored_images(project) < 30 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before_kill = stored_images(project)
    assert 0 < done_before_kill < 60, "the kill must land halfway"
    assert not store.exists()

    resumed = run([sys.executable, "-m", "stages.extract_cams"], project)
    assert f"| 60 | {60 - done_before_kill} | {done_before_kill} |" in resumed.stderr + resumed.stdout
    assert store.read_bytes() == reference
    assert not (project / "artifacts/.work").exists()


def test_killed_sam_masks_resumes_to_an_identical_store(project: Path) -> None:
    edit_params(project, lambda p: p["data"]["synthetic"].update(num_train=240, num_val=8, image_size=64))
    dvc(project, "repro", "prepare_data")
    run([sys.executable, "-m", "stages.sam_masks"], project)
    store = project / "artifacts/proposals.zarr.zip"
    reference = store.read_bytes()
    store.unlink()

    # The whole process group goes (the stage and its worker processes), as with a killed job.
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.sam_masks"], cwd=project, env=project_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while stored_images(project, "proposals.zarr.zip") < 60 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before_kill = stored_images(project, "proposals.zarr.zip")
    assert 0 < done_before_kill < 248, "the kill must land halfway"
    assert not store.exists()

    resumed = run([sys.executable, "-m", "stages.sam_masks"], project)
    assert f"| 248 | {248 - done_before_kill} | {done_before_kill} |" in resumed.stderr + resumed.stdout
    assert store.read_bytes() == reference
    assert not (project / "artifacts/.work").exists()

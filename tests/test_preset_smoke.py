"""Every preset end to end (``make smoke``): the params each preset file yields, on a tiny VOC or COCO layout of
real-sized photographs (500×375, 500×338; 2 train images and 1 val image), with the checkpoint files it reads in the
formats researchers have (random weights of the real architectures, :mod:`tests.preset_runs`), through
``dvc repro``.

Only sizes are shrunk, where a CPU cannot take them: epochs (1, or one past a frozen-backbone phase so both
phases run) with no step floor, batch sizes (2: one step per epoch), the vocabulary (12 words) — and
SAM: ViT-B's file (``model_type: auto``) for the presets' ViT-H (an encoder pass takes 9 s against 38 s here,
and one crop layer makes five passes per image), 4 points per side for 32 (measured on one 500×375 image with
ViT-B: 584 s at 32, 480 of them decoding the 2,048 prompts; 90 s at 16). Every switch stays as the preset sets
it (SAM's crop layer included). The suite runs in CI after ``make test`` (``.ci/run``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import preset_runs
from tests.conftest import REPO, dvc, make_project, project_env, write_params

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(2400)]  # a SAM preset's run: ~10 min beside another
SMOKE_BATCH = 2
SMOKE_TRAIN_IMAGES = 2  # one step per epoch at batch 2
SMOKE_SAM_POINTS = 4  # FMA's 32 per side: 2,048 prompts per image with the crop layer, 480 s of decoding here


def test_every_preset_file_is_in_a_run() -> None:
    """Every paper-scale preset; ``smoke.yaml`` is the tests' own tiny project, which every DVC test runs."""
    in_runs = {name for presets in preset_runs.RUNS.values() for name in presets}
    assert {p.stem for p in (REPO / "presets").glob("*.yaml")} - {"smoke"} == in_runs


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """What every run of the session shares, made by the first xdist worker: the checkpoint files
    (``files``), the photographs in VOC's and COCO's layouts at one path each (``VOC2012``, ``coco2014``) and one
    DVC cache (``dvc-cache``), so that a stage another run already made from the same inputs — the dataset, the
    fully supervised segmenter of the same preset — is restored from DVC's run-cache, not recomputed."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / "smoke"
    with FileLock(f"{root}.lock"):
        if not (root / "done").is_file():
            preset_runs.write_model_files(root / "files")
            preset_runs.make_voc_photographs(root / "VOC2012", train=SMOKE_TRAIN_IMAGES, val=1)
            preset_runs.make_coco_photographs(root / "coco2014", train=SMOKE_TRAIN_IMAGES, val=1)
            (root / "done").write_text("")
    return root


@pytest.mark.parametrize("run_name", list(preset_runs.RUNS))
def test_preset_runs_end_to_end_on_real_sized_images(run_name: str, shared: Path, tmp_path: Path) -> None:
    presets = preset_runs.RUNS[run_name]
    project = make_project(tmp_path / "project")
    dataset = shared / ("coco2014" if "data_coco" in presets else "VOC2012")
    preset_runs.link_models(shared / "files", project)
    write_params(project, preset_runs.preset_params(presets, dataset, SMOKE_BATCH, sam_points=SMOKE_SAM_POINTS))
    dvc(project, "cache", "dir", str(shared / "dvc-cache"))
    dvc(project, "repro", env={**project_env(), **preset_runs.model_env(shared / "files")})
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert metrics["images"] == SMOKE_TRAIN_IMAGES and metrics["final"]["images"] == 1
    assert 0.0 <= metrics["final"]["prediction"]["miou"] <= 1.0


def test_the_gpu_benchmark_runs_at_tiny_sizes_on_cpu(shared: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``benchmarks/gpu.py`` works before a GPU is at hand: every setting of the stages asked for is timed."""
    from benchmarks.gpu import main

    rows = main(["--images", "2", "--val-images", "1", "--batch", "2", "--workers", "1", "--runs",
                 "cam_resnet+irn_voc", "--stages", "train_classifier", "extract_cams", "refine", "--files",
                 str(shared / "files"), "--out", str(tmp_path)])  # fmt: skip
    timed = {(row["stage"], row["setting"]) for row in rows}
    assert timed >= {("train_classifier", "fp32, 0 workers"), ("train_classifier", "fp32, 1 workers"),
                     ("train_classifier", "bf16, 0 workers"), ("extract_cams", "bf16"),
                     ("extract_cams", "fp32, batch 8"), ("refine", "fp32")}  # fmt: skip
    assert not {stage for stage, _ in timed} & {"train_irn", "train_segmenter", "predict"}  # not asked for
    assert all(row["throughput"] > 0 for row in rows if row["throughput"] is not None)
    assert "| cam_resnet+irn_voc | extract_cams | bf16 |" in capsys.readouterr().out

"""The presets' stages on this machine's device: throughput, device utilisation and peak memory, fp32 against
bf16 and DataLoader workers 0 against N, as ratios measured in one run.

    python -m benchmarks.gpu [--images 32] [--val-images 4] [--runs cam_resnet+irn_voc fma_voc …]
                             [--stages extract_cams …] [--workers N] [--batch 16] [--sam vit_h] [--out DIR]

For each preset run (:data:`tests.preset_runs.RUNS`; the default five cover every kind of stage: a ResNet, a DeiT,
a ViT-B/16 at 960 px and two CLIP ViT-B/16 methods, SAM, the dense CRF, IRN and DeepLabV3+), a project with the
preset's params — epochs 1, batch sizes at most ``--batch`` — on ``--images`` + ``--val-images`` VOC-sized
photographs (500×375, 500×338) and the checkpoint files the preset reads, holding random weights of the real
architectures in the formats researchers have (SAM ViT-H on CUDA, ViT-B on a CPU: ``--sam``), is reproduced
once; then each of its working stages is rerun alone (``dvc repro -f -s``) under each setting:

- training stages (samples/s): fp32 with 0 loader workers (the baseline), fp32 with N workers, bf16;
- per-image stages (images/s; CAM extraction, SAM's automatic masks, the CRF or IRN's walk, prediction): fp32
  (the baseline), bf16 (``cam.inference.precision``, ``proposals.sam.precision``, ``predict.precision``), and
  for CAM extraction 8 images of one size and class list per forward (``cam.inference.batch_size``).

A stage's time is its wall time less the stage overhead (``dvc repro -f -s check_params``: DVC, Python and the
params, measured in the same run); utilisation and memory are sampled every 0.25 s while it runs (GPU: nvidia-smi;
CPU: the system's CPU use and the resident memory of the stage's processes).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from pipeline.params import PipelineParams
from tests import preset_runs
from tests.conftest import make_project, project_env, write_params

DEFAULT_RUNS = ["cam_resnet+irn_voc", "usage_deit", "apc_vitb16", "clip_es_voc", "fma_voc"]
DVC = str(Path(sys.executable).parent / "dvc")
TRAINING = {"train_classifier", "train_coarse", "train_irn", "train_segmenter"}
CAM_BATCH = 8


class Sampler(threading.Thread):
    """Device utilisation (%) and memory (MiB) every ``period`` seconds until :meth:`stop`: the GPU's through
    nvidia-smi on CUDA, else the system's CPU use and the resident memory of ``process``'s tree."""

    def __init__(self, process: psutil.Process, cuda: bool, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.process, self.cuda, self.period = process, cuda, period
        self.utilisation: list[float] = []
        self.memory: list[float] = []
        self.halt = threading.Event()

    def sample(self) -> tuple[float, float]:
        if self.cuda:
            index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
            line = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "-i", index,
                                   "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout  # fmt: skip
            utilisation, memory = (float(value) for value in line.split(","))
            return utilisation, memory
        try:
            tree = [self.process, *self.process.children(recursive=True)]
            resident = sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20
        except psutil.Error:
            resident = 0.0
        return psutil.cpu_percent(), resident

    def run(self) -> None:
        psutil.cpu_percent()
        while not self.halt.wait(self.period):
            utilisation, memory = self.sample()
            self.utilisation.append(utilisation)
            self.memory.append(memory)

    def stop(self) -> tuple[float, float]:
        """(mean utilisation, peak memory) of the samples taken."""
        self.halt.set()
        self.join()
        return (statistics.fmean(self.utilisation) if self.utilisation else 0.0,
                max(self.memory, default=0.0))  # fmt: skip


def run_stage(project: Path, stage: str, env: dict[str, str], cuda: bool) -> tuple[float, float, float]:
    """(wall seconds, mean utilisation, peak memory) of ``dvc repro -f -s stage``."""
    start = time.perf_counter()
    process = subprocess.Popen([DVC, "repro", "-f", "-s", stage], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    sampler = Sampler(psutil.Process(process.pid), cuda)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    utilisation, memory = sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{stage} failed in {project}:\n{output[-3000:]}")
    return seconds, utilisation, memory


def working_stages(params: PipelineParams) -> dict[str, str]:
    """The stages of a run that compute on the device or per image, each with what its throughput counts."""
    stages = {"train_classifier": "train samples", "extract_cams": "train images"}
    if getattr(type(params.cam.selected()), "coarse_method", None):
        stages.update(train_coarse="train samples", coarse_cams="train images")
    if params.proposals.method == "sam":
        stages["sam_masks"] = "images"
    if params.refine.method == "irn":
        stages["train_irn"] = "train samples"
    if params.refine.method != "none":
        stages["refine"] = "train images"
    stages.update(train_segmenter="train samples", predict="val images")
    return stages


INFERENCE_PRECISION = {"extract_cams": "cam.inference.precision", "coarse_cams": "cam.inference.precision",
                       "sam_masks": "proposals.sam.precision", "predict": "predict.precision"}  # fmt: skip


def settings(stage: str, workers: int) -> dict[str, dict[str, object]]:
    """The settings a stage is timed under (dotted keys of params.yaml), the baseline first."""
    if stage in TRAINING:
        return {"fp32, 0 workers": {"precision": "fp32", "loader_workers": 0},
                f"fp32, {workers} workers": {"precision": "fp32", "loader_workers": workers},
                "bf16, 0 workers": {"precision": "bf16", "loader_workers": 0}}  # fmt: skip
    if stage in INFERENCE_PRECISION:
        options = {precision: {INFERENCE_PRECISION[stage]: precision} for precision in ("fp32", "bf16")}
        if stage in ("extract_cams", "coarse_cams"):  # images of one size and class list in one forward
            options[f"fp32, batch {CAM_BATCH}"] = {"cam.inference.batch_size": CAM_BATCH}
        return options
    return {"fp32": {}}  # the CRF (CPU) and IRN's walk: no precision setting


def with_settings(params: dict, values: dict[str, object]) -> dict:
    """A copy of ``params`` with each dotted key of ``values`` set."""
    out = copy.deepcopy(params)
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = out
        for name in parents:
            node = node[name]
        node[leaf] = value
    return out


def measure_run(name: str, root: Path, files: Path, args: argparse.Namespace, sam: str, cuda: bool) -> list[dict]:
    """Reproduce one preset run, then time each working stage (of ``args.stages``, if given) under each setting;
    rows of the table."""
    images, val_images = args.images, args.val_images
    presets = preset_runs.RUNS[name]
    project = make_project(root / name)
    coco = "data_coco" in presets
    dataset = root / f"{name}-data"
    (preset_runs.make_coco_photographs if coco else preset_runs.make_voc_photographs)(dataset, images, val_images)
    preset_runs.link_models(files, project)
    params = preset_runs.preset_params(presets, dataset, args.batch, sam)
    params.update(precision="fp32", loader_workers=0)
    write_params(project, params)
    env = {**project_env(), **preset_runs.model_env(files)}
    built = subprocess.run([DVC, "repro"], cwd=project, env=env, capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {project}:\n{(built.stdout + built.stderr)[-3000:]}")
    overhead = statistics.median(run_stage(project, "check_params", env, cuda)[0] for _ in range(3))
    parsed = PipelineParams.model_validate(params)
    counts = {"train images": images, "train samples": images, "images": images + val_images,
              "val images": val_images}  # fmt: skip
    rows = []
    for stage, unit in working_stages(parsed).items():
        if args.stages and stage not in args.stages:
            continue
        base = None
        for setting, values in settings(stage, args.workers).items():
            write_params(project, with_settings(params, values))
            seconds, utilisation, memory = run_stage(project, stage, env, cuda)
            net = max(seconds - overhead, 1e-3)
            throughput = counts[unit] / net
            base = base or throughput
            rows.append({"run": name, "stage": stage, "setting": setting, "seconds": seconds, "unit": unit,
                         "throughput": throughput, "ratio": throughput / base, "utilisation": utilisation,
                         "memory": memory})  # fmt: skip
        write_params(project, params)
    rows.append({"run": name, "stage": "stage overhead (check_params)", "setting": "", "seconds": overhead,
                 "unit": "", "throughput": None, "ratio": None, "utilisation": None, "memory": None})  # fmt: skip
    return rows


def table(rows: list[dict], cuda: bool) -> str:
    memory = "peak GPU memory MiB" if cuda else "peak RSS MiB"
    utilisation = "GPU util %" if cuda else "CPU use %"
    lines = [f"| run | stage | setting | wall s | throughput | ratio to the first setting | {utilisation} | {memory} |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        if row["throughput"] is None:
            lines.append(f"| {row['run']} | {row['stage']} | | {row['seconds']:.1f} | | | | |")
            continue
        lines.append(f"| {row['run']} | {row['stage']} | {row['setting']} | {row['seconds']:.1f} | "
                     f"{row['throughput']:.2f} {row['unit']}/s | {row['ratio']:.2f} | {row['utilisation']:.0f} | "
                     f"{row['memory']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="training images")
    parser.add_argument("--val-images", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16, help="the most any stage's batch may be")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, choices=list(preset_runs.RUNS), metavar="RUN")
    parser.add_argument("--stages", nargs="+", default=None, help="time only these stages (default: every working "
                        "stage of the run)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="N of 'N workers'")
    parser.add_argument("--sam", choices=["vit_h", "vit_b"], default=None, help="default: vit_h on CUDA, else vit_b")
    parser.add_argument("--out", type=Path, default=None, help="keep the projects here (default: a temporary folder)")
    parser.add_argument("--files", type=Path, default=None,
                        help="checkpoint files already written by tests.preset_runs.write_model_files (default: "
                             "write them)")  # fmt: skip
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    sam = args.sam or ("vit_h" if cuda else "vit_b")
    root = args.out or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    try:
        files = args.files or preset_runs.write_model_files(root / "files", sam)
        rows = []
        for name in args.runs:
            rows += measure_run(name, root, files, args, sam, cuda)
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"{device}; {args.images} + {args.val_images} images, epochs 1, batch ≤ {args.batch}, SAM {sam}:")
    print(table(rows, cuda))
    print("presets: " + "; ".join(f"{name} = {' + '.join(preset_runs.RUNS[name])}" for name in args.runs))
    return rows


if __name__ == "__main__":
    main()

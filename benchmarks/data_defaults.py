"""The default pipeline on a dataset it was not tuned for: ``data.source: voc`` on :mod:`benchmarks.polygon_voc`
(600 / 150 images of 150–260 px), every other param as ``params.yaml`` has it, against the embedded default run
in the same call.

``python -m benchmarks.data_defaults [--out DIR] [--skip-embedded] [--set KEY=VALUE ...]`` builds each project
as a fresh git + DVC copy of this repository under ``--out``, runs ``dvc repro`` and prints one row per run: wall
time, classifier val mAP and exact match, CAM mIoU (GT-free and GT-tuned), seeds, refined labels, full
supervision and the final segmenter's val mIoU, and the steps each training stage ran. ``--set`` overrides a
param of both runs (``segmenter.crop_size=96``), to measure what a setting changes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.gpu import with_settings
from benchmarks.polygon_voc import write_polygon_voc
from tests.conftest import REPO, dvc, make_project, project_env, write_params


def run_default(project_root: Path, dataset: Path | None, overrides: list[str]) -> dict:
    """``dvc repro`` of the repository's params (``data.source: voc`` on ``dataset`` when given)."""
    project = make_project(project_root)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if dataset is not None:
        params["data"]["source"] = "voc"
        params["data"]["voc"]["root"] = str(dataset)
    values = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in overrides)}
    write_params(project, with_settings(params, values))
    start = time.perf_counter()
    dvc(project, "repro", env=project_env())
    seconds = time.perf_counter() - start
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    classifier = json.loads((project / "artifacts/classifier/metrics.json").read_text())
    steps = {name: json.loads((project / f"artifacts/{name}/metrics.json").read_text()).get("steps")
             for name in ("classifier", "segmenter", "segmenter_fullsup")}  # fmt: skip
    return {"minutes": seconds / 60, "mAP": classifier["val"]["mAP"],
            "exact": classifier["val"]["exact_match"], "cam_free": metrics["cam"]["gt_free"]["miou"],
            "cam_tuned": metrics["cam"]["gt_tuned"]["miou"], "seeds": metrics["seeds"]["miou"],
            "refined": metrics["refined"]["miou"], "fullsup": metrics["final"]["fullsup"]["miou"],
            "final": metrics["final"]["prediction"]["miou"], "steps": steps}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where the projects go (default: a temp folder)")
    parser.add_argument("--dataset", type=Path, default=None, help="the polygon dataset (written if missing)")
    parser.add_argument("--skip-embedded", action="store_true", help="only the polygon dataset's run")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="data-defaults-"))
    dataset = write_polygon_voc(args.dataset or out / "polygon_voc")
    rows = []
    runs = [("polygon_voc", dataset)] + ([] if args.skip_embedded else [("embedded", None)])
    for name, root in runs:
        row = {"dataset": name, **run_default(out / f"project-{name}", root, args.overrides)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| dataset | minutes | classifier mAP | exact match | CAM GT-free | CAM GT-tuned | seeds | refined | "
          "full supervision | final | steps (classifier, segmenter, fullsup) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        steps = ", ".join(str(v) for v in row["steps"].values())
        print(f"| {row['dataset']} | {row['minutes']:.1f} | {row['mAP']:.3f} | {row['exact']:.3f} | "
              f"{row['cam_free']:.3f} | {row['cam_tuned']:.3f} | {row['seeds']:.3f} | {row['refined']:.3f} | "
              f"{row['fullsup']:.3f} | {row['final']:.3f} | {steps} |")
    return rows


if __name__ == "__main__":
    main()

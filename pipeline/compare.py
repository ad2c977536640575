"""``make compare``: every registered CAM method (on each backbone it offers) as a DVC experiment, one table.

    python -m pipeline.compare                 # run what is missing, then write the table and the plot
    python -m pipeline.compare --report-only   # only read ``dvc exp show --json``

Each combination runs as ``dvc exp run --temp -n compare-<method>-<backbone> -S cam.method=… -S
cam.<method>.backbone=…`` on the committed pipeline (commit first: an experiment starts from HEAD); a method
with a segmentation decoder runs again as ``compare-<method>-single-stage``, its decoder's own labels as the
seeds, unrefined. The workspace is left alone, and DVC's run-cache makes a combination whose stages already ran
cost nothing (the default one is HEAD's own run). The table and plot are built from ``dvc exp show --json``
only — the experiments' own metrics — and written to ``reports/compare/`` (``methods.md``, ``methods.png``);
the README shows the table. A method issue only registers its method to appear here.

Experiments live in one clone's git refs, and a full comparison takes hours on a CPU, so each row is also kept
in ``reports/compare/rows.json`` with the commit it was measured at (its *commit* column): a run of some methods
(``--methods``) replaces their rows and keeps the others as they were measured, marked by their commit.

Each row records the configuration it was measured on (the dataset, its train and val sizes, the segmenter's
epochs) and the epochs each training ran; rows of different configurations are refused in one table (a
tiny ``presets/smoke.yaml`` run never lands beside full-size rows): ``--out`` writes another report, and
``--fresh`` drops the kept rows.

GT-free CAM figures use the fixed background pad of ``evaluate.bg_pad``; the GT-tuned ones the pad a sweep
against ground truth picked, labelled as such: an upper bound that no stage downstream uses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cams.params import CamParams
from pipeline.io import write_json

EXPERIMENT_PREFIX = "compare-"
METRICS_FILE = "artifacts/eval/metrics.json"
EPOCHS_FILES = {"classifier": "artifacts/classifier/metrics.json", "segmenter": "artifacts/segmenter/metrics.json"}
REPORT_DIR = Path("reports/compare")
ROWS_FILE = "rows.json"
COLUMNS = (  # (header, path in metrics.json)
    ("CAM mIoU GT-free", ("cam", "gt_free", "miou")),
    ("FPR", ("cam", "gt_free", "fpr")),
    ("FNR", ("cam", "gt_free", "fnr")),
    ("CAM mIoU GT-tuned*", ("cam", "gt_tuned", "miou")),
    ("CAM mIoU own bg", ("cam", "own_background", "miou")),
    ("seeds mIoU", ("seeds", "miou")),
    ("refined mIoU", ("refined", "miou")),
    ("final val mIoU", ("final", "prediction", "miou")),
    ("ratio to full sup.", ("final", "prediction", "ratio_to_fullsup")),
)


SINGLE_STAGE = (
    "cam.inference.head=decoder",
    "seeds.method=threshold",
    "seeds.threshold.background=model",
    "refine.method=none",
)  # a single-stage method's own labels: its decoder's argmax, unrefined


@dataclass(frozen=True)
class Combination:
    """One row of the comparison: a CAM method on one of its backbones (``None``: it has no choice); with
    ``single_stage``, the labels of its segmentation decoder (APC) instead of its CAMs → seeds → refinement."""

    method: str
    backbone: str | None
    single_stage: bool = False

    @property
    def name(self) -> str:
        suffix = (f"-{self.backbone}" if self.backbone else "") + ("-single-stage" if self.single_stage else "")
        return f"{EXPERIMENT_PREFIX}{self.method}{suffix}"

    @property
    def choice(self) -> str:
        return " ".join(filter(None, [self.backbone, "single-stage" if self.single_stage else None]))

    def overrides(self) -> list[str]:
        sets = [f"cam.method={self.method}"]
        if self.backbone:
            sets.append(f"cam.{self.method}.backbone={self.backbone}")
        sets += SINGLE_STAGE if self.single_stage else ()
        return [arg for value in sets for arg in ("-S", value)]


def combinations() -> list[Combination]:
    """Every CAM method of params.yaml's ``cam`` section (the registry's names, tested equal) × its backbones."""
    rows = []
    for method in CamParams.method_names():
        params = type(getattr(CamParams(), method))
        field = params.model_fields.get("backbone")
        choices = typing.get_args(field.annotation) if field is not None else ()
        rows.extend(Combination(method, backbone) for backbone in (choices or (None,)))
        if params.has_decoder:
            rows.extend(Combination(method, backbone, single_stage=True) for backbone in (choices or (None,)))
    return rows


def run_experiment(combination: Combination, dvc: str) -> None:
    """Run (or restore from the run-cache) one combination as a named experiment outside the workspace.

    An older experiment of the same name is removed first: ``dvc exp run -f`` would overwrite it, but would also
    force every stage to run again.
    """
    subprocess.run([dvc, "exp", "remove", combination.name], capture_output=True)  # absent: nothing to remove
    command = [dvc, "exp", "run", "--temp", "-n", combination.name, *combination.overrides()]
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def experiment_metrics(exp_show: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``compare-*`` experiments of the current baseline (HEAD) from ``dvc exp show --json``: name → the
    evaluation's metrics, with ``epochs``: what the classifier and the segmenter trained (their metrics)."""
    found: dict[str, dict[str, Any]] = {}
    baselines = [record for record in exp_show if record.get("rev") != "workspace"]
    for experiment in (baselines[0].get("experiments") or []) if baselines else []:
        for rev in experiment.get("revs", []):
            name, data = rev.get("name") or experiment.get("name"), rev.get("data") or {}
            files = data.get("metrics") or {}
            metrics = files.get(METRICS_FILE, {}).get("data")
            if name and name.startswith(EXPERIMENT_PREFIX) and metrics and name not in found:
                epochs = {part: (files.get(path, {}).get("data") or {}).get("epochs")
                          for part, path in EPOCHS_FILES.items()}  # fmt: skip
                found[name] = {**metrics, "epochs": epochs}
    return found


def configuration(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a row was measured on, which every row of one table shares: the dataset, its sizes, the
    segmenter's epochs (the CAM methods' own schedules differ by design, and are each row's ``epochs``)."""
    return {"dataset": (metrics.get("dataset") or {}).get("name"), "train images": metrics.get("images"),
            "val images": (metrics.get("final") or {}).get("images"),
            "segmenter epochs": (metrics.get("epochs") or {}).get("segmenter")}  # fmt: skip


class MixedConfigurations(ValueError):
    """Rows measured on different configurations (a tiny run, another dataset) were to share one table."""


def lookup(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) else None


def table_rows(found: dict[str, dict[str, Any]], commit: str = "") -> list[dict[str, Any]]:
    """One row per experiment, in the order of :func:`combinations`; what each metrics.json says it ran, and
    the ``commit`` it ran at."""
    rows = []
    for combination in combinations():
        metrics = found.get(combination.name)
        if metrics is None:
            continue
        row = {"name": combination.name, "commit": commit, "method": metrics["cam"].get("method", combination.method),
               "choice": combination.choice, "backbone": metrics["cam"].get("backbone", combination.backbone or ""),
               "seeds": metrics["seeds"].get("method"), "refine": metrics["refined"].get("method"),
               "configuration": configuration(metrics), "epochs": metrics.get("epochs") or {}}  # fmt: skip
        row.update({header: lookup(metrics, path) for header, path in COLUMNS})
        rows.append(row)
    return rows


def merged_rows(kept: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of this commit's experiments, and the kept rows of the combinations not run again, in the order
    of :func:`combinations` (a kept row of a combination that no longer exists is dropped). Raise
    :class:`MixedConfigurations` when the rows were measured on different configurations (a row kept from
    before configurations were recorded counts as one of its own)."""
    by_name = {row["name"]: row for row in kept} | {row["name"]: row for row in fresh}
    rows = [by_name[c.name] for c in combinations() if c.name in by_name]
    seen: dict[str, list[str]] = {}
    for row in rows:
        seen.setdefault(describe_configuration(row.get("configuration")), []).append(row["name"])
    if len(seen) > 1:
        groups = "; ".join(f"{', '.join(names)} on {config}" for config, names in seen.items())
        raise MixedConfigurations(f"rows of different configurations would share one table: {groups}. Write this "
                                  "run to a report of its own (--out), or drop the kept rows (--fresh)")  # fmt: skip
    return rows


def describe_configuration(config: dict[str, Any] | None) -> str:
    """A configuration in words (``synthetic-voc, 1200 train / 200 val images, segmenter 6 epochs``)."""
    if not config:
        return "an unrecorded configuration (measured before rows recorded theirs)"
    return (f"{config['dataset']}, {config['train images']} train / {config['val images']} val images, segmenter "
            f"{config['segmenter epochs']} epochs")  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table, with the note that labels the GT-tuned column."""
    headers = ["method", "backbone", "seeds → refine", *(header for header, _ in COLUMNS), "epochs (CAM / seg.)",
               "commit"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        method = row["method"] + (" (single-stage)" if "single-stage" in row["choice"] else "")
        cells = [method, row["backbone"], f"{row['seeds']} → {row['refine']}"]
        cells += ["–" if row[h] is None else f"{row[h]:.3f}" for h, _ in COLUMNS]
        epochs = row.get("epochs") or {}
        trained = f"{_count(epochs.get('classifier'))} / {_count(epochs.get('segmenter'))}"
        lines.append("| " + " | ".join([*cells, trained, row["commit"]]) + " |")
    lines.append("")
    if rows:
        lines.append(f"Measured on {describe_configuration(rows[0].get('configuration'))}.")
        lines.append("")
    lines.append(
        "\\* background pad picked by a sweep against ground truth: an upper bound, never used downstream. "
        "*own bg*: argmax over the method's own background map (APC, PCC). *single-stage*: APC's decoder "
        "labels as the seeds, unrefined. *commit*: the commit a row was measured at (`make compare` reruns all)."
    )
    return "\n".join(lines) + "\n"


def _count(value: Any) -> str:
    return "–" if value is None else str(value)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: mIoU at each step per method (left), the CAMs' GT-free FPR / FNR (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = ["CAM mIoU GT-free", "CAM mIoU GT-tuned*", "seeds mIoU", "refined mIoU", "final val mIoU"]
    labels = [" ".join(filter(None, [row["method"], row["choice"]])) for row in rows]
    x = np.arange(len(rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(12, 1.1 * len(rows) + 4), 5.5),
                                         gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    width = 0.8 / len(steps)
    for i, step in enumerate(steps):
        left.bar(x + (i - (len(steps) - 1) / 2) * width, [row[step] or 0 for row in rows], width, label=step)
    left.set(ylabel="mIoU", ylim=(0, 1), title="mIoU along the pipeline")
    left.legend(fontsize=7)
    for i, rate in enumerate(("FPR", "FNR")):
        right.bar(x + (i - 0.5) * 0.4, [row[rate] or 0 for row in rows], 0.4, label=f"CAM {rate} (GT-free)")
    right.set(ylim=(0, 1), title="CAM errors")
    right.legend(fontsize=7)
    for axis in (left, right):  # one label per method, slanted so that long ones do not collide
        axis.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    if rows:
        figure.suptitle(describe_configuration(rows[0].get("configuration")), fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="run nothing; report the existing experiments")
    parser.add_argument("--methods", nargs="*", help="only these CAM methods (default: all registered)")
    parser.add_argument("--out", type=Path, default=REPORT_DIR, help=f"report directory (default: {REPORT_DIR})")
    parser.add_argument("--fresh", action="store_true", help="drop the kept rows: the table has this run's only")
    args = parser.parse_args(argv)
    dvc = str(Path(sys.executable).parent / "dvc")
    known = CamParams.method_names()
    unknown = sorted(set(args.methods or []) - set(known))
    if unknown:
        parser.error(f"unknown CAM methods {unknown}; known: {', '.join(known)}")
    if not args.report_only:
        for combination in combinations():
            if not args.methods or combination.method in args.methods:
                run_experiment(combination, dvc)
    shown = subprocess.run([dvc, "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    kept_file = args.out / ROWS_FILE
    kept = json.loads(kept_file.read_text()) if kept_file.is_file() and not args.fresh else []
    try:
        rows = merged_rows(kept, table_rows(experiment_metrics(json.loads(shown)), commit))
    except MixedConfigurations as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 1
    if not rows:
        print("no compare-* experiments on this commit yet: run `make compare`", file=sys.stderr)
        return 1
    table = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(kept_file, rows)
    (args.out / "methods.md").write_text(table)
    plot(rows, args.out / "methods.png")
    print(table + f"\nwritten: {args.out / 'methods.md'}, {args.out / 'methods.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

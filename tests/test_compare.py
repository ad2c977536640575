"""make compare: the combinations it runs and the table it builds from ``dvc exp show --json``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline import compare
from pipeline.cams.registry import CAM_METHODS
from pipeline.compare import (
    Combination,
    MixedConfigurations,
    combinations,
    experiment_metrics,
    markdown,
    merged_rows,
    plot,
    table_rows,
)


def metrics(method: str, backbone: str, cam_miou: float) -> dict:
    rates = {"miou": cam_miou, "fpr": 0.5, "fnr": 0.25}
    return {
        "cam": {"method": method, "backbone": backbone, "gt_free": rates, "gt_tuned": {**rates, "miou": 0.6}},
        "seeds": {"method": "sams", "miou": 0.5},
        "refined": {"method": "crf", "miou": 0.52},
        "final": {"prediction": {"miou": 0.58, "ratio_to_fullsup": 0.64}, "images": 200},
        "dataset": {"name": "synthetic-voc"},
        "images": 1200,
    }


def experiment(name: str, data: dict | None, epochs: tuple[int, int] = (12, 6)) -> dict:
    trained = {"artifacts/classifier/metrics.json": {"data": {"epochs": epochs[0]}},
               "artifacts/segmenter/metrics.json": {"data": {"epochs": epochs[1]}}}  # fmt: skip
    metrics_files = None if data is None else {"metrics": {"artifacts/eval/metrics.json": {"data": data}, **trained}}
    revision = {"rev": "f" * 40, "name": name, "error": None, "experiments": None, "data": metrics_files}
    return {"revs": [revision], "executor": None, "name": name}


EXP_SHOW = [  # the shape of DVC 3's `dvc exp show --json`
    {"rev": "workspace", "name": None, "data": {"metrics": {}}, "error": None, "experiments": None},
    {"rev": "a" * 40, "name": "main", "data": {"metrics": {}}, "error": None, "experiments": [
        experiment("compare-usage-vit", metrics("usage", "vit tiny", 0.17)),
        experiment("compare-cam-resnet", metrics("cam", "resnet10", 0.22)),
        experiment("lr-sweep-3", metrics("cam", "resnet10", 0.99)),  # not a comparison run
        experiment("compare-usage-resnet", None),  # failed: no metrics
    ]},
]  # fmt: skip


def test_every_registered_method_on_each_backbone_is_compared() -> None:
    rows = combinations()
    assert {row.method for row in rows} == set(CAM_METHODS.names())
    assert {Combination("cam", "resnet"), Combination("cam", "vit"), Combination("usage", "vit")} <= set(rows)
    assert len({row.name for row in rows}) == len(rows)
    assert Combination("usage", "vit").overrides() == ["-S", "cam.method=usage", "-S", "cam.usage.backbone=vit"]
    single = Combination("apc", None, single_stage=True)  # APC's decoder labels: a row of their own
    assert single in rows and single.name == "compare-apc-single-stage"
    assert single.overrides()[1::2] == ["cam.method=apc", "cam.inference.head=decoder", "seeds.method=threshold",
                                        "seeds.threshold.background=model", "refine.method=none"]  # fmt: skip


def test_table_from_exp_show_lists_comparison_runs_in_registry_order(tmp_path: Path) -> None:
    found = experiment_metrics(EXP_SHOW)
    assert set(found) == {"compare-usage-vit", "compare-cam-resnet"}
    rows = table_rows(found, commit="abc1234")
    assert [(row["method"], row["backbone"]) for row in rows] == [("cam", "resnet10"), ("usage", "vit tiny")]
    table = markdown(rows).splitlines()
    assert table[0].startswith("| method | backbone | seeds → refine | CAM mIoU GT-free | FPR | FNR |")
    assert table[0].endswith("| epochs (CAM / seg.) | commit |")
    assert table[2] == (
        "| cam | resnet10 | sams → crf | 0.220 | 0.500 | 0.250 | 0.600 | – | 0.500 | 0.520 | 0.580 | 0.640 | 12 / 6 "
        "| abc1234 |"
    )
    assert "Measured on synthetic-voc, 1200 train / 200 val images, segmenter 6 epochs." in table
    assert "ground truth" in table[-1]
    single = {**rows[0], "choice": "single-stage", "seeds": "threshold", "refine": "none"}
    assert markdown([single]).splitlines()[2].startswith("| cam (single-stage) | resnet10 | threshold → none |")
    plot(rows, tmp_path / "methods.png")
    assert (tmp_path / "methods.png").stat().st_size > 0


def test_no_experiments_yet_gives_an_empty_table() -> None:
    assert table_rows(experiment_metrics([EXP_SHOW[0]])) == []


def test_a_partial_run_replaces_its_rows_and_keeps_the_others_with_their_commit() -> None:
    earlier = table_rows(experiment_metrics(EXP_SHOW), commit="old0001")
    gone = {**earlier[0], "name": "compare-removed-method"}  # a combination that no longer exists
    fresh = table_rows({"compare-usage-vit": {**metrics("usage", "vit tiny", 0.3), "epochs": {"segmenter": 6}}},
                       commit="new0002")  # fmt: skip
    rows = merged_rows([*earlier, gone], fresh)
    assert [(row["name"], row["commit"], row["CAM mIoU GT-free"]) for row in rows] == [
        ("compare-cam-resnet", "old0001", 0.22),
        ("compare-usage-vit", "new0002", 0.3),
    ]


def test_rows_of_different_configurations_are_refused_in_one_table(tmp_path: Path, monkeypatch) -> None:
    """A tiny run (presets/smoke.yaml) beside full-size rows, or rows kept from before configurations were
    recorded: refused, naming both groups; --fresh keeps only this run's rows, --out writes elsewhere."""
    full = table_rows(experiment_metrics(EXP_SHOW), commit="old0001")
    tiny = {**metrics("usage", "vit tiny", 0.1), "images": 24, "final": {"prediction": {"miou": 0.1}, "images": 8},
            "epochs": {"classifier": 1, "segmenter": 1}}  # fmt: skip
    fresh = table_rows({"compare-usage-vit": tiny}, commit="new0002")
    with pytest.raises(MixedConfigurations, match="compare-cam-resnet on synthetic-voc, 1200 train / 200 val "
                       "images, segmenter 6 epochs; compare-usage-vit on synthetic-voc, 24 train / 8 val images, "
                       "segmenter 1 epochs"):  # fmt: skip
        merged_rows(full, fresh)
    legacy = [{key: value for key, value in row.items() if key != "configuration"} for row in full]
    with pytest.raises(MixedConfigurations, match="unrecorded configuration"):
        merged_rows(legacy, table_rows(experiment_metrics(EXP_SHOW), commit="new0002")[:1])
    assert [row["name"] for row in merged_rows([], fresh)] == ["compare-usage-vit"]  # what --fresh does

    out = tmp_path / "report"
    out.mkdir()
    (out / "rows.json").write_text(json.dumps(full))
    shown = json.dumps([EXP_SHOW[0], {**EXP_SHOW[1], "experiments": [experiment("compare-usage-vit", tiny, (1, 1))]}])

    def fake_run(command, **kwargs):
        stdout = shown if command[1:3] == ["exp", "show"] else "abc1234\n"
        return subprocess.CompletedProcess(command, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    assert compare.main(["--report-only", "--out", str(out)]) == 1  # refused: the kept rows are full-size
    assert compare.main(["--report-only", "--out", str(out), "--fresh"]) == 0
    assert "24 train / 8 val images" in (out / "methods.md").read_text()

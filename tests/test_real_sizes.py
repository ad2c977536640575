"""The real-sample path end to end: a tiny VOC layout of photographs at VOC's sizes, through the whole DAG."""

import io
import json
import zipfile
from pathlib import Path

from PIL import Image

from tests.conftest import dvc
from tests.conftest import edit_params as edit
from tests.preset_runs import make_voc_photographs


def test_voc_sized_photographs_run_prepare_data_to_evaluate(project: Path) -> None:
    voc = project / "VOC2012"
    ids = make_voc_photographs(voc)
    edit(project, lambda p: p["data"].update(source="voc", voc={**p["data"]["voc"], "root": str(voc)}))
    dvc(project, "repro")
    manifest = json.loads((project / "artifacts/dataset/manifest.json").read_text())
    sizes = {(e["width"], e["height"]) for entries in manifest["splits"].values() for e in entries}
    assert sizes == {(500, 375), (500, 338)}
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert metrics["images"] == 4 and metrics["final"]["images"] == 2
    assert 0.0 <= metrics["final"]["prediction"]["miou"] <= 1.0
    with zipfile.ZipFile(project / "artifacts/predictions.zip") as predictions:
        for image_id in ids[4:]:
            prediction = Image.open(io.BytesIO(predictions.read(f"{image_id}.png")))
            assert prediction.size == Image.open(voc / "JPEGImages" / f"{image_id}.jpg").size

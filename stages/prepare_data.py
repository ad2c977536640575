"""Stage prepare_data: generate (synthetic) or validate (VOC, COCO) the dataset and write its manifest."""

import sys

from pipeline import layout
from pipeline.data.datasets import prepare_dataset
from pipeline.params import PipelineParams
from pipeline.tracking import progress, report
from stages import run


def body(params: PipelineParams) -> None:
    manifest = prepare_dataset(params.data, layout.DATASET, progress=progress)
    report(
        "Dataset",
        [
            {"split": s, "images": len(es), "labels per image": sum(len(e.labels) for e in es) / len(es)}
            for s, es in manifest.splits.items()
        ],  # fmt: skip
        notes=f"{manifest.name}: {manifest.num_classes} classes, root {manifest.root}",
    )


if __name__ == "__main__":
    sys.exit(run("prepare_data", __doc__, body, ["data"]))

"""Stage prepare_data: generate (synthetic) or validate (VOC, COCO) the dataset and write its manifest."""

import sys

from pipeline import layout
from pipeline.data.datasets import prepare_dataset
from pipeline.params import PipelineParams
from pipeline.tracking import progress, report
from stages import run


def body(params: PipelineParams) -> None:
    manifest = prepare_dataset(params.data, layout.DATASET, progress=progress)
    labels = manifest.labels
    report(
        "Dataset",
        [
            {
                "split": s,
                "images": len(es),
                "labels per image": sum(len(e.labels) for e in es) / len(es),
                "dropped (no foreground)": labels["dropped_no_foreground"].get(s, 0),
                "kept negatives": labels["kept_no_foreground"].get(s, 0),
                "labels without pixels": labels["labels_without_pixels"].get(s, 0),
                "pixels without labels": labels["pixels_without_labels"].get(s, 0),
                "median size": manifest.sizes(s).describe() if es else "",
            }
            for s, es in manifest.splits.items()
        ],  # fmt: skip
        notes=f"{manifest.name}: {manifest.num_classes} classes, root {manifest.root}, image labels "
        f"{labels['label_file'] or '(none)'} read as {labels['label_format']}",
    )


if __name__ == "__main__":
    sys.exit(run("prepare_data", __doc__, body, ["data"]))

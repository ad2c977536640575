"""Stage train_irn: train IRN's boundary network on the seeds (artifacts/irn/model.pt) for refine.method: irn;
a placeholder for the other refinements."""

import sys

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device
from pipeline.params import PipelineParams
from pipeline.refine.irn_training import train_irn
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    metrics = train_irn(params.refine.irn, params.refine.method == "irn", load_manifest(layout.DATASET),
                        layout.DATASET, layout.SEEDS, layout.CLASSIFIER / "model.pt", params.cam, params.seed,
                        resolve_device(params.device), layout.IRN)  # fmt: skip
    report("IRN boundary network", [metrics])


if __name__ == "__main__":
    sys.exit(run("train_irn", __doc__, body, ["refine", "cam"]))

"""Stage train_irn: train IRN's boundary network on the seeds (artifacts/irn/model.pt) for refine.method: irn;
a placeholder for the other refinements (written without importing any model code: it runs on every change)."""

import sys

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device, training_runtime
from pipeline.execution.launch import start_training_processes
from pipeline.io import write_json, write_torch
from pipeline.live import empty_curves
from pipeline.params import PipelineParams
from pipeline.tracking import report
from pipeline.trainer import write_history
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    if params.refine.method != "irn":
        layout.IRN.mkdir(parents=True, exist_ok=True)
        write_torch(layout.IRN_MODEL, {"method": "none"})
        write_history(layout.IRN / "loss.csv", [])  # the header alone, as the other placeholders'
        empty_curves(layout.IRN)
        write_json(layout.IRN / "metrics.json", {"method": "none"})
        report("IRN boundary network", [{"method": "none", "refine.method": params.refine.method}])
        return
    from pipeline.refine.irn_training import train_irn  # the model code, only when IRN is selected

    device = resolve_device(params.device)
    metrics = train_irn(params.refine.irn, load_manifest(layout.DATASET), layout.DATASET, layout.SEEDS,
                        layout.CLASSIFIER / "model.pt", params.cam, params.seed, device, layout.IRN,
                        training_runtime(params, device))  # fmt: skip
    report("IRN boundary network", [metrics])


if __name__ == "__main__":
    sys.exit(run("train_irn", __doc__, body, ["refine", "cam"], trains=lambda p: p.refine.method == "irn",
                 start_processes=start_training_processes))

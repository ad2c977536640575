"""Stage check_params: validate the whole params.yaml before any other stage runs.

A typo in a section that no stage tracks (``sead: 1``, ``seeds.threshold.constant.fg_padd`` while another seed
method is selected) would otherwise pass unnoticed: no stage reruns, and ``dvc repro`` says "up to date". This
stage depends on the params.yaml *file*, so any edit reruns it (and a failed check reruns until it is fixed),
and it is the head of the DAG; it checks keys, types, ranges, method names and cross-field rules without
importing any method (pipeline/schema.py), and that a ``device`` other than auto or cpu exists here (only then
importing torch). Its output never
changes, so it never makes another stage rerun, and a no-op repro does not run it at all.
"""

import argparse
import sys

from pipeline.io import write_json
from pipeline.layout import PARAMS_CHECK
from pipeline.params import ParamsError, load_params

CAM_ROLES = ("all",)  # it validates every CAM method's section (pipeline/code_closure.py)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.check_params", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    path = parser.parse_args().params
    try:
        params = load_params(path)
        if params.device not in ("auto", "cpu"):  # only then is torch imported, to ask for CUDA
            from pipeline.device import resolve_device

            resolve_device(params.device)
    except (ParamsError, RuntimeError) as error:
        print(f"check_params: error: {error}", file=sys.stderr)
        return 1
    write_json(PARAMS_CHECK, {"params": path, "valid": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage select_prompts: POLE's synonym per train image and class (eq. 6) from the baseline's CAMs
(artifacts/coarse/prompts.json, statistics in prompt_stats.json); a placeholder for other methods (written without
importing any model code: it runs on every vocabulary change)."""

import json
import sys
from pathlib import Path

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device
from pipeline.io import write_json
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    request = json.loads((layout.COARSE_REQUEST / "selection.json").read_text())
    if request["method"] == "none":
        write_json(layout.COARSE_PROMPTS, {"method": "none"})
        write_json(layout.COARSE_PROMPT_STATS, {"method": "none"})
        report("Selected prompts (eq. 6)", [{"method": "none", "cam.method": params.cam.method}])
        return
    from pipeline.cams.methods.pole.selection import select_prompts  # the CLIP code, only for POLE

    stats = select_prompts(request, load_manifest(layout.DATASET), Path(), layout.VOCAB / "synonyms.json",
                           layout.CLIP_MODEL / "clip.json", resolve_device(params.device), layout.COARSE_PROMPTS,
                           layout.COARSE_PROMPT_STATS)  # fmt: skip
    per_class = stats["per_class"]
    width = max((len(counts) for counts in per_class.values()), default=0)
    rows = [{"class": name, **{f"#{i + 1}": "" for i in range(width)},
             **{f"#{i + 1}": f"{w} ({n})" for i, (w, n) in enumerate(counts.items())}}
            for name, counts in per_class.items()]  # fmt: skip
    report("Selected prompts (eq. 6): wins per synonym", rows)


if __name__ == "__main__":
    sys.exit(run("select_prompts", __doc__, body, ["device", "cam"]))

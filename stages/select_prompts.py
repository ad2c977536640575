"""Stage select_prompts: POLE's synonym per train image and class (eq. 6) from the first phase's CAMs
(artifacts/coarse/prompts.json, statistics in prompt_stats.json); a placeholder for other methods."""

import json
import sys
from pathlib import Path

from pipeline import layout
from pipeline.cams.methods.pole.selection import select_prompts
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    request = json.loads((layout.COARSE_REQUEST / "selection.json").read_text())
    stats = select_prompts(request, load_manifest(layout.DATASET), Path(), layout.VOCAB / "synonyms.json",
                           layout.CLIP_MODEL / "clip.json", resolve_device(params.device), layout.COARSE_PROMPTS,
                           layout.COARSE_PROMPT_STATS)  # fmt: skip
    per_class = stats.get("per_class", {})
    width = max((len(counts) for counts in per_class.values()), default=0)
    rows = [{"class": name, **{f"#{i + 1}": "" for i in range(width)},
             **{f"#{i + 1}": f"{w} ({n})" for i, (w, n) in enumerate(counts.items())}}
            for name, counts in per_class.items()]  # fmt: skip
    report("Selected prompts (eq. 6): wins per synonym", rows or [{"method": "none"}])


if __name__ == "__main__":
    sys.exit(run("select_prompts", __doc__, body, ["device", "cam"]))

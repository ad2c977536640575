#!/usr/bin/env bash
# The monitoring screenshots of docs/monitoring/ (README "Watching a training run"), taken in headless Chromium
# (`apt-get install chromium`): a tiny project (presets/smoke.yaml, longer trainings) run by flows.pipeline under
# a Prefect server on 127.0.0.1:4200, its `dvc plots show` page, and the compare report.
#   scripts/screenshots.sh [OUT]      (default /tmp/wsss-screenshots)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/wsss-screenshots}
export PATH=$REPO/.venv/bin:$PATH PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1 PYTHONHASHSEED=0
export PREFECT_HOME=$OUT/prefect-home
rm -rf $OUT/project $OUT/prefect-home $OUT/*.png
cd $REPO && python -c "
from tests.conftest import make_project, edit_params
from pathlib import Path
p = make_project(Path('$OUT/project'))
edit_params(p, lambda q: (q['segmenter'].update(epochs=6), q['cam']['cam']['training'].update(epochs=4), q['monitoring'].update(images_every=2)))
"
cd $OUT/project && git add -A && git commit -qm tiny
prefect server start --host 127.0.0.1 --port 4200 > $OUT/server.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:4200/api/health >/dev/null && break; sleep 1; done
PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.pipeline > $OUT/pipeline.log 2>&1 || true
dvc plots show -o $OUT/plots > /dev/null
mkdir -p $OUT/compare && cp $REPO/reports/compare/rows.json $OUT/compare/
cd $REPO && python -m pipeline.compare --report-only --out $OUT/compare > $OUT/compare.log 2>&1 || true
python - <<PY
import markdown, pathlib
md = pathlib.Path('$OUT/compare/methods.md').read_text()
page = f"<html><head><meta charset='utf-8'><style>body{{font-family:sans-serif;font-size:12px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px}}</style></head><body><h2>make compare</h2>{markdown.markdown(md, extensions=['tables'])}<img src='methods.png' width='1300'></body></html>"
pathlib.Path('$OUT/compare/index.html').write_text(page)
PY
shot() { chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=$2 --virtual-time-budget=${4:-8000} --screenshot=$3 "$1" 2>/dev/null; }
shot file://$OUT/plots/index.html 1400,6000 $OUT/plots.png
shot file://$OUT/compare/index.html 1400,1400 $OUT/compare.png
PIPE=$(curl -s -X POST http://127.0.0.1:4200/api/flow_runs/filter -H 'content-type: application/json' -d '{"flows":{"name":{"any_":["wsss-pipeline"]}}}' | python -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
SEG=$(curl -s -X POST http://127.0.0.1:4200/api/flow_runs/filter -H 'content-type: application/json' -d '{"flows":{"name":{"any_":["train_segmenter"]}}}' | python -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
shot http://127.0.0.1:4200/runs/flow-run/$PIPE 1600,1100 $OUT/pipeline-run.png 20000
shot "http://127.0.0.1:4200/runs/flow-run/$SEG?tab=Artifacts" 1600,1100 $OUT/segmenter-artifacts.png 20000
shot "http://127.0.0.1:4200/runs" 1600,1100 $OUT/runs.png 20000
kill $SERVER
mkdir -p "$REPO/docs/monitoring"
python -c "
from PIL import Image
Image.open('$OUT/plots.png').crop((0, 1500, 1400, 2700)).save('$REPO/docs/monitoring/live-curves.png', optimize=True)
Image.open('$OUT/pipeline-run.png').save('$REPO/docs/monitoring/pipeline-run.png', optimize=True)
Image.open('$OUT/compare.png').crop((0, 0, 1400, 1000)).save('$REPO/docs/monitoring/compare.png', optimize=True)
Image.open('$OUT/segmenter-artifacts.png').save('$REPO/docs/monitoring/stage-run.png', optimize=True)
"
echo done

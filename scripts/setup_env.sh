#!/usr/bin/env bash
# Create .venv (Python 3.11) and install requirements.txt; skip when the pins are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pip==26.3
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
echo "$want" > "$stamp"
echo "environment ready: $venv"

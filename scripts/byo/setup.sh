#!/usr/bin/env bash
# Creates .venv-byo, the developer-only Python environment for the bring-your-own exporters
# (PyTorch, OpenCLIP). The README's two commands and CI never need it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-byo"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/byo/requirements.txt"
echo "ready: $venv/bin/python"

#!/usr/bin/env bash
# Self-contained demo of the main job: a sandbox home with three profiles, its own scandir
# and s6-svscan, the real hermes gateway (hermes-agent 0.19.0 from PyPI) supervised.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x .venv-hermes/bin/hermes ]; then
  echo "demo: installing hermes-agent[messaging]==0.19.0 into .venv-hermes (once)" >&2
  python3 -m venv .venv-hermes
  .venv-hermes/bin/python -m pip install -q 'hermes-agent[messaging]==0.19.0'
fi
exec .venv/bin/python scripts/demo.py "$@"

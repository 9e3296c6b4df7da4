#!/usr/bin/env bash
# The demo command's body (run by `make demo` after set-up): the offline phantom pipeline, see scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"

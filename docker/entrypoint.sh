#!/usr/bin/env bash
# `docker run lfr experiments/vicreg.py with full` runs a script with Python;
# anything else (`make report`, `lfr runs`, `bash`) runs as given.
set -euo pipefail
if [[ $# -gt 0 && "$1" == *.py ]]; then
  exec python "$@"
fi
exec "$@"

#!/usr/bin/env bash
# `docker run lfr experiments/vicreg.py with full` runs a script with Python;
# anything else (`make report`, `lfr runs`, `bash`) runs as given.
set -euo pipefail
if [[ $# -gt 0 && "$1" == *.py ]]; then
  if [[ ! -f "$1" ]]; then
    scripts=$(ls experiments/*.py 2>/dev/null | paste -sd ' ' || true)
    echo "error: no script $1 in $(pwd); the experiments are: ${scripts:-none} (e.g. experiments/vicreg.py with smoke)" >&2
    exit 2
  fi
  exec python "$@"
fi
exec "$@"

#!/usr/bin/env bash
# Install Debian packages, only those missing: by default what the project needs at run
# time (WeasyPrint's Pango and HarfBuzz libraries and a font), or the packages named as
# arguments (docker-compose for `make lint`, chromium for `make test-stack`, Slurm and munge
# for the executor tests of `make test`). As root it
# runs apt-get; otherwise it uses sudo, or prints the command to run.
set -euo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
[ $# -gt 0 ] && packages=("$@")
if ! command -v dpkg-query >/dev/null; then
  echo "note: not a Debian-based system; install these yourself: ${packages[*]}" >&2
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "error: missing system packages (${missing[*]}) and no apt-get: install them yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "error: missing system packages; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Install the Debian packages the project needs at run time, only those missing:
# WeasyPrint's Pango and HarfBuzz libraries and a font. As root it runs apt-get;
# otherwise it uses sudo, or prints the command to run.
set -euo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
if ! command -v dpkg-query >/dev/null; then
  echo "note: not a Debian-based system; install Pango, HarfBuzz and the DejaVu fonts for WeasyPrint yourself" >&2
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "error: missing system packages (${missing[*]}) and no apt-get: install Pango, HarfBuzz and a font for WeasyPrint" >&2
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

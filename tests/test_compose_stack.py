"""The compose stack, up for real (``make test-container``, as root): docker-compose (1.29,
Debian's) drives podman's Docker-compatible API; docker-compose.yml is the user's, with
tests/container/compose.test.yml replacing only the MongoDB image, which cannot be pulled
here (a MongoDB-wire server built locally, with the stack's credentials and its health
check's ping). The runner and Omniboard images are built beforehand from their own
Dockerfiles on a locally made Debian base (tests/podman_host.py).

``up``; ``run --rm runner experiments/vicreg.py with smoke`` records into the stack's
database; Omniboard's HTTP API lists the run with its metrics; nothing listens beyond
127.0.0.1; ``down`` and ``up`` again: the run is still there. ``down -v`` at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import wait_until
from podman_host import ENV, HERE, REPO, build_images, host_problem, podman

from lfr_report.tracking.local_stack import free_port

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> str:
    """podman's Docker-compatible API on a socket of the test's own, for docker-compose."""
    if host_problem():
        pytest.fail(host_problem())
    print(f"build times (s): {build_images()}")
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(socket.exists, "podman system service's socket", service, ceiling_s=120)
    yield f"unix://{socket}"
    service.terminate()
    service.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(api, tmp_path_factory):
    """The compose command for a project of the test's own, with an .env made from .env.example
    (a fresh password, free ports on 127.0.0.1); ``down -v`` afterwards."""
    settings = {"MONGO_ROOT_PASSWORD": uuid.uuid4().hex, "MONGO_PORT": str(free_port()),
                "OMNIBOARD_PORT": str(free_port()), "LFR_BIND": "127.0.0.1"}  # fmt: skip
    lines = [line for line in (REPO / ".env.example").read_text().splitlines() if line.split("=")[0] not in settings]
    env_file = tmp_path_factory.mktemp("stack") / ".env"
    env_file.write_text("\n".join(lines + [f"{k}={v}" for k, v in settings.items()]) + "\n")
    project = f"lfrtest{uuid.uuid4().hex[:6]}"

    def command(*args: str) -> list[str]:
        return ["docker-compose", "--project-name", project, "--env-file", str(env_file),
                "-f", str(REPO / "docker-compose.yml"), "-f", str(HERE / "compose.test.yml"), *args]  # fmt: skip

    def compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(command(*args), cwd=REPO, env=compose.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    compose.command, compose.project, compose.env = command, project, {**os.environ, "DOCKER_HOST": api}
    compose.settings = {**dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")),
                        **settings}  # fmt: skip
    yield compose
    compose("down", "--volumes", "--remove-orphans")


def up(compose) -> None:
    """``up -d``, then wait until Omniboard answers. podman runs health checks from systemd
    timers and this machine has no systemd, so while compose waits for MongoDB's health the
    test plays systemd's part: ``podman healthcheck run`` on the project's containers."""
    started = subprocess.Popen(compose.command("up", "-d"), cwd=REPO, env=compose.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while started.poll() is None:
        assert time.monotonic() < deadline, "docker-compose up did not finish in 300 s"
        for name in podman("ps", "--filter", f"label=com.docker.compose.project={compose.project}",
                           "--filter", "health=starting", "--format", "{{.Names}}").stdout.split():  # fmt: skip
            podman("healthcheck", "run", name, check=False)
        time.sleep(2)
    assert started.returncode == 0, started.stdout.read()[-3000:]
    board = f"http://127.0.0.1:{compose.settings['OMNIBOARD_PORT']}/"
    while True:
        try:
            with urllib.request.urlopen(board, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, compose("logs", "--tail", "40").stdout[-3000:]
        time.sleep(1)


def omniboard(compose, resource: str, **query: object) -> list[dict]:
    """GET Omniboard's REST API (``/sacred/api/v1/<resource>``), each query value JSON-encoded."""
    params = urllib.parse.urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in query.items()})
    url = f"http://127.0.0.1:{compose.settings['OMNIBOARD_PORT']}/sacred/api/v1/{resource}?{params}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def listening(port: str) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (``ss``)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.split()[3].endswith(f":{port}")}


def test_the_stack_records_a_run_that_omniboard_lists_and_keeps_it_across_down_and_up(stack):
    up(stack)
    done = stack("run", "--rm", "-T", "runner", "experiments/vicreg.py", "with", "smoke")  # -T: no terminal here
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vicreg run 1: linear probe" in done.stdout and "MongoDB database 'lfr', run 1" in done.stdout

    [listed] = omniboard(stack, "Runs", select="_id,status,experiment.name,config.scale")
    assert (listed["_id"], listed["status"], listed["experiment"]["name"]) == (1, "COMPLETED", "vicreg")
    metrics = {m["name"]: m for m in omniboard(stack, "Metrics", query={"run_id": 1})}
    assert {"train_loss", "probe_test_accuracy"} <= set(metrics)
    assert metrics["train_loss"]["steps"] == list(range(8)) and len(metrics["train_loss"]["values"]) == 8

    for port in (stack.settings["MONGO_PORT"], stack.settings["OMNIBOARD_PORT"]):
        assert listening(port) == {"127.0.0.1"}, f"port {port}: {listening(port)}"

    down = stack("down")
    assert down.returncode == 0, down.stderr[-3000:]
    up(stack)
    [kept] = omniboard(stack, "Runs", select="_id,status")
    assert (kept["_id"], kept["status"]) == (1, "COMPLETED")
    assert {m["name"] for m in omniboard(stack, "Metrics", query={"run_id": 1})} == set(metrics)


def test_the_compose_file_the_test_ran_is_the_users_but_for_the_mongodb_image():
    replaced = yaml.safe_load((HERE / "compose.test.yml").read_text())["services"]
    assert list(replaced) == ["mongo"] and set(replaced["mongo"]) == {"image", "init", "healthcheck"}
    assert Path(REPO / "docker-compose.yml").read_text().count("image: mongo:") == 1

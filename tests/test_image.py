"""The runner image, built from the project's Dockerfile and run with podman on this machine
(``make test-container``, as root; tests/podman_host.py says how the images are made here).

Inside the image, as its non-root user, with named volumes for ``/data`` and ``/runs``: an
experiment run by the entrypoint's ``*.py`` form, listed from a second container; a report
written into a bind-mounted folder, with the numbers of the runs on the volume; ``podman
stop`` during a run and the same command resuming it; a run recorded in a MongoDB-wire
server outside the container; bad input in one line. Nothing here is skipped: a missing
tool fails the module, since the image is what these tests prove.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from helpers import report_numbers
from podman_host import HOST_CA, RUNNER, build_images, build_mounts, host_problem, podman

from lfr_report.report import vicreg
from lfr_report.tracking.local_stack import free_port, start_local_mongo, stop
from lfr_report.tracking.store import FileRunStore, MongoRunStore

pytestmark = pytest.mark.container
USER = 1000  # the image's user (Dockerfile: useradd --uid 1000 lfr)
SMOKE = ("experiments/vicreg.py", "with", "smoke")


@pytest.fixture(scope="module")
def image() -> str:
    if host_problem():
        pytest.fail(host_problem())
    print(f"build times (s): {build_images(('runner',))}")
    return RUNNER


@pytest.fixture
def volumes(image):
    """Two fresh named volumes, ``data`` and ``runs``, removed afterwards with the test's containers."""
    tag = f"lfrt-{uuid.uuid4().hex[:8]}"
    named = {"data": f"{tag}-data", "runs": f"{tag}-runs", "tag": tag}
    for volume in (named["data"], named["runs"]):
        podman("volume", "create", volume)
    yield named
    for container in podman("ps", "-aq", "--filter", f"name={tag}").stdout.split():
        podman("rm", "-f", container, check=False)
    podman("volume", "rm", "-f", named["data"], named["runs"], check=False)


def run(volumes: dict, *command: str, options: tuple[str, ...] = (), runs: str | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """``podman run --rm`` of the image with the test's volumes at /data and /runs (or ``runs`` there)."""
    return podman("run", "--rm", "-v", f"{volumes['data']}:/data", "-v", f"{runs or volumes['runs']}:/runs", *options,
                  RUNNER, *command, check=False, timeout=timeout)  # fmt: skip


def volume_store(volumes: dict) -> FileRunStore:
    """The runs volume read from this machine, where podman keeps it."""
    return FileRunStore(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volumes["runs"]).stdout.strip())


def test_the_image_imports_the_package_at_the_pinned_torch_as_its_non_root_user(image, tmp_path):
    probe = (
        "import json, os, sys, torch, lfr_report.cli as cli; "
        "print(json.dumps([os.getuid(), sys.version_info[:2], torch.__version__, torch.version.cuda, cli.__file__]))"
    )
    done = podman("run", "--rm", image, "python", "-P", "-c", probe)
    uid, python, torch_version, cuda, where = json.loads(done.stdout.splitlines()[-1])
    assert (uid, python, torch_version, cuda) == (USER, [3, 11], "2.14.1+cu130", "13.0"), done.stdout
    assert where.startswith("/opt/lfr/lib/python3.11/site-packages/lfr_report/")  # installed, not the copy in /app
    # The build machine's settings (its pip.conf, npmrc, CA, wheel folders) were mounts: podman
    # leaves their mount points behind, empty, and nothing of their content.
    targets = [option.split(":")[1] for option in build_mounts(tmp_path)[1::2]]
    assert {"/etc/pip.conf", "/root/.npmrc", HOST_CA} <= set(targets)
    found = podman("run", "--rm", "--user", "0", "--entrypoint", "find", image, *targets, "-mindepth", "0",
                   "(", "-type", "f", "-size", "+0", ")", "-o", "(", "-type", "d", "-not", "-empty", ")", check=False)  # fmt: skip
    assert found.stdout == "", found.stdout


def test_a_run_on_the_runs_volume_is_completed_and_a_second_container_lists_it(volumes):
    done = run(volumes, *SMOKE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vicreg run 1: linear probe" in done.stdout and "in /runs/1" in done.stdout
    [recorded] = volume_store(volumes).runs()
    assert (recorded.id, recorded.status, recorded.config["scale"]) == ("1", "COMPLETED", "smoke")
    listed = run(volumes, "lfr", "runs")
    assert listed.returncode == 0, listed.stderr
    [row] = [words for line in listed.stdout.splitlines() if (words := line.split())[:2] == ["1", "vicreg"]]
    assert row[2:5] == ["COMPLETED", "smoke", "synthetic"]
    assert "1 run(s) in /runs" in listed.stdout


def test_a_report_lands_in_a_bind_mount_with_the_numbers_of_the_runs_on_the_volume(volumes, tmp_path, monkeypatch,
                                                                                     request):  # fmt: skip
    reports = Path(tempfile.mkdtemp(prefix="lfr-reports-"))  # beside tmp_path, which uid 1000 cannot enter
    request.addfinalizer(lambda: shutil.rmtree(reports))
    os.chown(reports, USER, USER)  # the calling user's folder: uid 1000, the image's user
    done = run(volumes, "lfr", "report", "vicreg", "--scale", "smoke", options=("-v", f"{reports}:/app/reports"))
    assert done.returncode == 0, done.stderr[-3000:]
    pdf = reports / "vicreg.pdf"
    assert pdf.stat().st_uid == USER and pdf.stat().st_size > 10_000
    inside = report_numbers(pdf)
    assert len(inside) > 30

    # The same report built here from a copy of the volume's runs reuses every run (it runs
    # nothing) and carries the same numbers: the PDF's numbers are the volume's runs'.
    copy = tmp_path / "copied-runs"
    shutil.copytree(volume_store(volumes).root, copy)
    monkeypatch.setenv("LFR_RUNS_DIR", str(copy))
    store = FileRunStore(copy)
    before = sorted(r.id for r in store.runs())
    assert report_numbers(vicreg.REPORT.build(store, "smoke", tmp_path / "here.pdf")) == inside
    assert sorted(r.id for r in store.runs()) == before

    # the calling user reads and deletes what the container wrote
    as_user = {"user": USER, "group": USER, "capture_output": True}
    assert subprocess.run(["head", "-c", "5", str(pdf)], **as_user).stdout == b"%PDF-"
    assert subprocess.run(["rm", str(pdf)], **as_user).returncode == 0 and not pdf.exists()


def test_podman_stop_leaves_the_run_interrupted_and_the_same_command_resumes_it(volumes):
    """SIGTERM through tini: Sacred records INTERRUPTED; the checkpoint on the volume is resumed."""
    longer = (*SMOKE, "epochs=40")
    name = f"{volumes['tag']}-stopped"
    podman("run", "-d", "--name", name, "-v", f"{volumes['data']}:/data", "-v", f"{volumes['runs']}:/runs", RUNNER,
           *longer)  # fmt: skip
    store = volume_store(volumes)
    checkpoints = store.root / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("vicreg-*.pt")):  # an epoch done: the run is mid-training
        assert time.monotonic() < deadline, podman("logs", name).stderr[-3000:]
        assert podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true", "it ended early"
        time.sleep(0.5)
    podman("stop", "--time", "60", name)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "130"
    logs = podman("logs", name).stderr
    assert "interrupted (stopped by signal SIGTERM); the run is recorded INTERRUPTED" in logs, logs[-3000:]
    assert "Traceback" not in logs
    assert store.get("1").status == "INTERRUPTED"

    done = run(volumes, *longer)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = store.get("2")
    assert resumed.status == "COMPLETED" and resumed.info["resumed_from_epoch"] >= 1
    assert store.get("1").status == "INTERRUPTED"  # the stopped run's record is kept as it was
    assert not list(checkpoints.glob("*.pt")) and not list(checkpoints.glob("*.lock"))


@pytest.fixture(scope="module")
def outside_mongo(tmp_path_factory) -> str:
    """A MongoDB-wire server on this machine's loopback (SecantusDB; never skipped here)."""
    process = start_local_mongo(free_port(), tmp_path_factory.mktemp("secantus"))
    yield f"mongodb://127.0.0.1:{process.args[process.args.index('--port') + 1]}"
    stop(process)


def test_a_run_lands_in_mongodb_outside_the_container_and_another_container_lists_it(volumes, outside_mongo):
    url = f"{outside_mongo}/lfr_image_{uuid.uuid4().hex[:8]}"
    options = ("--network", "host", "-e", f"LFR_MONGO_URL={url}")
    done = run(volumes, *SMOKE, options=options)
    assert done.returncode == 0, done.stderr[-3000:]
    store = MongoRunStore.from_url(url)
    [recorded] = store.find("vicreg", "COMPLETED")
    assert f"MongoDB database '{store.db.name}', run {recorded.id}" in done.stdout
    assert store.metrics(recorded.id)["train_loss"].steps == list(range(8))
    assert volume_store(volumes).runs() == []  # nothing went to the file store
    listed = run(volumes, "lfr", "runs", options=options)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:3] == [recorded.id, "vicreg", "COMPLETED"] for line in listed.stdout.splitlines())
    store.db.client.drop_database(store.db.name)


@pytest.mark.parametrize(
    "case, command, unwritable_runs, message",
    [
        ("unknown script", ("experiments/nope.py", "with", "smoke"), False,
         "error: no script experiments/nope.py in /app; the experiments are: experiments/autoencoder.py"),
        ("unwritable /runs", SMOKE, True,
         "error: cannot write in /runs (LFR_RUNS_DIR) as uid 1000: Permission denied; make it writable"),
        ("unwritable /runs, report", ("lfr", "report", "vicreg", "--scale", "smoke"), True,
         "error: cannot write in /runs (LFR_RUNS_DIR) as uid 1000: Permission denied; make it writable"),
        ("missing data set", (*SMOKE, "data.name=cifar10"), False,
         "dataset 'cifar10' not found (looked in /data/cifar-10-batches-py); get it with:"),
    ],
)  # fmt: skip
def test_bad_input_inside_the_container_is_one_line_and_nothing_completed(volumes, tmp_path, case, command,
                                                                          unwritable_runs, message):  # fmt: skip
    unwritable = tmp_path / "root-owned"
    unwritable.mkdir(mode=0o755)  # root's, as docker makes a missing bind-mount folder
    done = run(volumes, *command, runs=str(unwritable) if unwritable_runs else None)
    assert done.returncode not in (0, 130), case
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() and "ERROR - " not in line]
    assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert [r.status for r in volume_store(volumes).runs() if r.status == "COMPLETED"] == []
    assert list(unwritable.iterdir()) == []


def test_the_runs_volume_keeps_what_an_earlier_run_left_when_a_later_one_fails(volumes):
    """A failing run beside a completed one leaves the completed one's record whole."""
    assert run(volumes, *SMOKE).returncode == 0
    before = json.loads((volume_store(volumes).root / "1" / "run.json").read_text())
    assert run(volumes, *SMOKE, "data.name=cifar10").returncode != 0
    assert json.loads((volume_store(volumes).root / "1" / "run.json").read_text()) == before

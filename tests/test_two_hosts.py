"""Across machines: two hosts on one machine (network namespaces joined by a link, see
``tests/two_hosts.py``) running a two-node Slurm cluster.

* One run on two nodes: the manual's recipe (docs/scale-out.md) (``srun torchrun --nnodes=2 ... --rdzv_endpoint=
  $head:29500``) trains VICReg across the hosts over gloo; one DDP step there equals one
  process with the whole batch; one run is recorded, by global rank 0, into the store on
  the shared file system; a rank failing on the second host fails the run with its error.
* A report's runs spread over the cluster: ``lfr report vicreg --scale smoke --executor
  slurm`` from the first host runs a wave's jobs on both nodes, and its PDF's numbers equal
  the inline build's.

Root only (network namespaces, Slurm's daemons); ``make test-cluster`` runs them, and a
machine that cannot is a failure there, never a skip.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import resume_report
import two_hosts
from helpers import report_numbers, wait_until

from lfr_report.tracking.store import FileRunStore

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 300

# The manual's multi-node recipe (docs/scale-out.md) with what a CPU test changes: one process per node (no
# GPUs), the store and checkpoints on the shared file system, smoke scale.
RECIPE = """\
#!/bin/bash
#SBATCH --job-name=ddp-two-hosts --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --output={out}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node=1 \\
    --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$head:29500" \\
    {script}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = two_hosts.why_not()
    if reason:
        pytest.fail(f"the two-host tests need root, iproute2 and Slurm: {reason}")
    tag = f"t{os.getpid() % 10000}"
    with two_hosts.two_host_cluster(tmp_path_factory.mktemp("two-hosts"), tag=tag) as made:
        yield made
    assert two_hosts.leftovers(tag) == []  # the namespaces are gone


@pytest.fixture
def shared(isolated: Path) -> dict[str, str]:
    """The environment of jobs on the cluster: this test's store and checkpoints (the shared file system)."""
    return {"LFR_RUNS_DIR": str(isolated / "runs"), "LFR_CHECKPOINT_DIR": str(isolated / "checkpoints"),
            "LFR_DATA_DIR": str(isolated / "data"), "LFR_CACHE_DIR": str(isolated / "cache"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}:/usr/sbin:/sbin",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}  # fmt: skip


def sbatch_recipe(cluster: two_hosts.Cluster, folder: Path, script: str, env: dict[str, str]) -> str:
    """Submit the recipe running ``script`` from host 1, wait for it; its output."""
    out = folder / "job.out"
    batch = folder / "job.sh"
    batch.write_text(RECIPE.format(out=out, script=script))
    head = cluster.hosts[0]
    done = cluster.run(head, "sbatch", "--wait", str(batch), env=env, cwd=REPO, timeout=JOB_TIMEOUT_S)
    return f"sbatch: {done.returncode} {done.stdout}{done.stderr}\n" + (out.read_text() if out.is_file() else "")


def test_two_hosts_have_their_own_names_and_addresses_and_meet_only_over_their_link(cluster, tmp_path):
    one, two = cluster.hosts
    assert cluster.nodes() == {one.name: "idle", two.name: "idle"}
    assert cluster.run(one, "hostname").stdout.strip() == one.name
    assert cluster.run(two, "getent", "hosts", one.name).stdout.split()[0] == one.address
    listener = socket.create_server(("127.0.0.1", 0))  # on the machine's own loopback
    port = listener.getsockname()[1]
    reach = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print('reached')"
    try:
        assert cluster.run(two, sys.executable, "-c", reach, "127.0.0.1", str(port)).returncode != 0  # not theirs
    finally:
        listener.close()
    listening = tmp_path / "listening"  # the server says so once listen() has returned: the client starts then
    serve = ("import socket,sys; s = socket.create_server(('0.0.0.0', 29400)); open(sys.argv[1], 'w').close(); "
             "c, a = s.accept(); c.sendall(socket.gethostname().encode()); print(a[0])")  # fmt: skip
    results = {}
    accept = threading.Thread(
        target=lambda: results.update(server=cluster.run(one, sys.executable, "-c", serve, str(listening)))
    )
    accept.start()
    wait_until(lambda: listening.exists() or not accept.is_alive(), "host 1's server listening", ceiling_s=120)
    fetch = "import socket,sys\nc = socket.create_connection((sys.argv[1], 29400), 30)\nprint(c.recv(100).decode())"
    client = cluster.run(two, sys.executable, "-c", fetch, one.name)
    accept.join(120)
    assert "server" in results and listening.exists(), results
    assert client.stdout.strip() == one.name  # host 2 reached host 1 by its name
    assert results["server"].stdout.strip() == two.address  # from host 2's address on the link


def test_one_vicreg_run_trains_across_two_hosts_and_is_recorded_once(cluster, shared, isolated):
    output = sbatch_recipe(cluster, isolated, "experiments/vicreg.py with smoke device=cpu data.train_size=256 "
                           "tsne_points=64", shared)  # fmt: skip
    runs = FileRunStore(isolated / "runs").runs()
    assert len(runs) == 1, output[-3000:]
    (run,) = runs
    assert run.status == "COMPLETED", output[-3000:]
    assert run.info["world_size"] == 2
    assert sorted(run.info["hosts"]) == sorted(h.name for h in cluster.hosts)  # one rank on each host
    assert json.loads((isolated / "runs" / run.id / "run.json").read_text())["host"]["hostname"] == run.info["hosts"][0]
    assert len(FileRunStore(isolated / "runs").metrics(run.id)["train_loss"].values) == 256 // 64
    assert not list((isolated / "checkpoints").iterdir())  # written on the shared path, removed once, by rank 0


def test_a_two_host_run_stopped_after_its_first_epoch_resumes_from_the_shared_checkpoint(cluster, shared, isolated):
    """The recipe's job cancelled once its first epoch is saved, then submitted again: the new
    run resumes from that checkpoint, on the shared path, whichever host holds rank 0 now."""
    script = "experiments/vicreg.py with smoke device=cpu data.train_size=2048 epochs=8 tsne_points=64"
    batch = isolated / "job.sh"
    batch.write_text(RECIPE.format(out=isolated / "first.out", script=script))
    one = cluster.hosts[0]
    submitted = cluster.run(one, "sbatch", "--parsable", str(batch), env=shared, cwd=REPO)
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not list((isolated / "checkpoints").glob("vicreg-*.pt")):
        assert time.monotonic() < deadline, (isolated / "first.out").read_text()[-3000:]
        time.sleep(0.2)
    cluster.run(one, "scancel", submitted.stdout.strip().split(";")[0])
    while cluster.run(one, "squeue", "-h", "-o", "%i").stdout.strip():  # the job and its steps are gone
        assert time.monotonic() < deadline
        time.sleep(0.5)
    output = sbatch_recipe(cluster, isolated, script, shared)
    first, second = sorted(FileRunStore(isolated / "runs").runs(), key=lambda r: int(r.id))
    assert first.status in ("INTERRUPTED", "FAILED") and second.status == "COMPLETED", output[-3000:]
    assert second.info["resumed_from_epoch"] >= 1 and second.info["world_size"] == 2
    assert sorted(second.info["hosts"]) == sorted(h.name for h in cluster.hosts)
    assert not list((isolated / "checkpoints").glob("vicreg-*.pt"))  # removed once the run completed


def test_one_ddp_step_across_hosts_equals_one_process_with_the_whole_batch(cluster, shared, isolated):
    measured = isolated / "measured.json"
    output = sbatch_recipe(cluster, isolated, f"tests/ddp_equivalence.py {measured}", shared)
    assert measured.is_file(), output[-3000:]
    result = json.loads(measured.read_text())
    assert result["world_size"] == 2
    for objective in ("vicreg", "simclr"):  # the bounds of tests/test_distributed.py, with one process on each host
        step = result[objective]
        assert step["loss_error"] < 1e-5 and step["terms_error"] < 1e-5
        assert step["gradient_error"] < 1e-5 * step["gradient_scale"]
    wrong = result["vicreg_without_all_reduce"]
    assert wrong["gradient_error"] > 0.05 * wrong["gradient_scale"]  # the negative control still fails
    assert result["fit"]["parameter_spread"] == 0.0 and result["fit"]["resume_error"] == 0.0
    assert result["fit"]["resumed"] == [1, 1]  # resumed from epoch 1, epoch 2 trained alone


def test_a_rank_failing_on_the_other_host_fails_the_run_with_its_error(cluster, shared, isolated):
    output = sbatch_recipe(cluster, isolated, "tests/ddp_failing.py", shared)  # rank 1 fails in its second step
    (run,) = FileRunStore(isolated / "runs").runs()
    assert run.status == "FAILED", output[-3000:]
    record = json.loads((isolated / "runs" / run.id / "run.json").read_text())
    (other,) = {h.name for h in cluster.hosts} - {record["host"]["hostname"]}  # rank 0 recorded; rank 1 is there
    trace = "".join(record["fail_trace"])
    assert f"rank 1 of 2 failed on {other}" in trace and "planted failure: rank 1 could not make its views" in trace


def test_a_reports_runs_spread_over_both_nodes_and_give_the_inline_numbers(cluster, shared, isolated, smoke_runs,
                                                                           monkeypatch):  # fmt: skip
    jobs = isolated / "jobs"
    out = isolated / "reports" / "vicreg.pdf"
    built = cluster.run(cluster.hosts[0], sys.executable, "-m", "lfr_report", "report", "vicreg", "--scale", "smoke",
                        "--executor", "slurm", "--cpus-per-job", "1", "--time-min", "10", "--jobs-dir", str(jobs),
                        "--out", str(out), env=shared, cwd=REPO, timeout=JOB_TIMEOUT_S * 2)  # fmt: skip
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    store = FileRunStore(isolated / "runs")
    hosts = {json.loads((isolated / "runs" / r.id / "run.json").read_text())["host"]["hostname"] for r in store.runs()}
    assert hosts == {h.name for h in cluster.hosts}  # the waves ran on both nodes
    assert {r.status for r in store.runs()} == {"COMPLETED"}
    inline = isolated / "inline"
    shutil.copytree(smoke_runs, inline / "runs")
    from lfr_report import cli

    argv = ["report", "vicreg", "--scale", "smoke", "--executor", "inline", "--out", str(inline / "vicreg.pdf")]
    monkeypatch.setenv("LFR_RUNS_DIR", str(inline / "runs"))
    assert cli.main(argv) == 0
    assert report_numbers(out) == report_numbers(inline / "vicreg.pdf")


# --- jobs stopped by Slurm come back and resume ---------------------------------------------


def resume_templates(isolated: Path, shared: dict[str, str]) -> dict[str, str]:
    """The jobs' environment with resume_report's template in a templates folder of its own."""
    templates = isolated / "templates"
    templates.mkdir(exist_ok=True)
    (templates / f"{resume_report.NAME}.html").write_text(resume_report.TEMPLATE)
    return {**shared, "LFR_TEMPLATES_DIR": str(templates)}


def inline_pdf(isolated: Path, env: dict[str, str]) -> Path:
    """resume_report built inline (in a store of its own): the uninterrupted numbers."""
    out = isolated / "inline.pdf"
    command = cli_with_report("resume_report", "--executor", "inline", "--out", str(out))
    own = {"LFR_RUNS_DIR": str(isolated / "inline-runs"), "LFR_CHECKPOINT_DIR": str(isolated / "inline-checkpoints")}
    assert subprocess.run(command, cwd=REPO, env={**os.environ, **env, **own}).returncode == 0
    return out


def launch_resume_report(cluster: two_hosts.Cluster, isolated: Path, env: dict[str, str],
                         *options: str) -> subprocess.Popen:  # fmt: skip
    """``lfr report resume_test --executor slurm`` started on host 1; returns at its first epoch's checkpoint."""
    command = cluster.hosts[0].command(*cli_with_report(
        "resume_report", "--executor", "slurm", "--cpus-per-job", "1", "--time-min", "10", "--jobs-dir",
        str(isolated / "jobs"), "--out", str(isolated / "slurm.pdf"), *options))  # fmt: skip
    launcher = subprocess.Popen(command, cwd=REPO, env={**cluster.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not list((isolated / "checkpoints").glob("vicreg-*.pt")):
        if launcher.poll() is not None or time.monotonic() > deadline:
            launcher.kill()
            pytest.fail(f"no checkpoint of the run: {launcher.communicate()[0][-3000:]}")
        time.sleep(0.2)
    return launcher


@contextmanager
def requeued_jobs_released(cluster: two_hosts.Cluster) -> Iterator[None]:
    """Slurm holds a requeued job about two minutes before it may start again (its BeginTime):
    while the block runs, such a job is let start at once (the tests need not wait; nothing else
    changes)."""
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(0.5):
            pending = cluster.run(cluster.hosts[0], "squeue", "-h", "-t", "PENDING", "-o", "%i %r").stdout.split("\n")
            for job in [line.split()[0] for line in pending if line.endswith(" BeginTime")]:
                cluster.run(cluster.hosts[0], "scontrol", "update", f"JobId={job}", "StartTime=now")

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def with_job_logs(output: str, isolated: Path) -> str:
    """The launcher's last lines and, after them, each job log's last lines (a failure says why)."""
    logs = []
    for log in sorted((isolated / "jobs").glob("*/*_log.err")):
        lines = [ln for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if "it/s" not in ln]
        logs.append(f"--- {log.relative_to(isolated)} (progress bars left out):\n" + "\n".join(lines)[-2500:])
    return "\n".join([output[-3000:], *logs])


def the_job(cluster: two_hosts.Cluster) -> tuple[str, str]:
    """The one job of the launcher in the queue: its id and node."""
    (line,) = [ln for ln in cluster.run(cluster.hosts[0], "squeue", "-h", "-o", "%i %N %j").stdout.splitlines()
               if not ln.endswith(" hold")]  # fmt: skip
    job, node, _ = line.split()
    return job, node


@pytest.mark.parametrize("stop", ["time limit", "time limit signal", "scontrol requeue"])
def test_a_job_slurm_stops_is_requeued_resumes_and_gives_the_uninterrupted_numbers(cluster, shared, isolated, stop):
    """A real two-minute time limit (Slurm's SIGUSR2 45 s before it, or up to 60 s earlier: 15 to
    75 s into the job); the same signal sent at once after the first checkpoint; and ``scontrol
    requeue``, what preemption does."""
    env = resume_templates(isolated, shared)
    limit = []
    if stop == "time limit":  # about 90 s of training: the signal comes before it ends, after the first epochs
        env["LFR_TEST_RESUME_EPOCHS"] = "50"
        limit = ["--time-min", "2", "--signal-delay-s", "45", "--max-requeues", "8"]
    inline = inline_pdf(isolated, env)
    with requeued_jobs_released(cluster), launch_resume_report(cluster, isolated, env, *limit) as launcher:
        job, _ = the_job(cluster)
        if stop == "scontrol requeue":
            signalled = cluster.run(cluster.hosts[0], "scontrol", "requeue", job)
        elif stop == "time limit signal":  # what Slurm sends signal_delay_s before the time limit, sent now
            signalled = cluster.run(cluster.hosts[0], "scancel", "--signal=USR2", job)
        else:
            signalled = cluster.run(cluster.hosts[0], "true")  # Slurm sends it
        assert signalled.returncode == 0, signalled.stderr
        output, _ = launcher.communicate(timeout=JOB_TIMEOUT_S)
    assert launcher.returncode == 0, with_job_logs(output, isolated)
    assert "requeued resume_test/encoder  (job " in output and ", try 2); it resumes from its checkpoint" in output
    runs = sorted(FileRunStore(isolated / "runs").runs(), key=lambda r: int(r.id))
    *stopped, resumed = runs
    assert [r.status for r in runs] == ["INTERRUPTED" if stop == "scontrol requeue" else "TIMEOUT"] * len(stopped) + [
        "COMPLETED"]  # fmt: skip
    assert stopped  # at least one try was stopped (a time limit may stop a second one)
    assert resumed.info["earlier_tries"] == [r.id for r in stopped]  # the store links the tries and the run
    assert resumed.info["resumed_from_epoch"] >= 1
    assert report_numbers(isolated / "slurm.pdf") == report_numbers(inline)


@pytest.mark.parametrize("requeue", [True, False], ids=["slurm requeues", "no requeue"])
def test_a_node_lost_mid_run_is_named_and_its_run_finished_on_the_other(cluster, shared, isolated, requeue):
    """Slurm's default (JobRequeue=1) requeues the job of a failed node: the report completes. With
    ``--no-requeue`` the report stops naming the run and the node, and the same command finishes it."""
    one, two = cluster.hosts
    env = resume_templates(isolated, shared)
    inline = inline_pdf(isolated, env)
    options = []
    if not requeue:
        (isolated / "slurm.toml").write_text("[slurm.extra]\nno_requeue = true\n")
        options = ["--slurm-config", str(isolated / "slurm.toml")]
    hold = cluster.run(one, "sbatch", "-J", "hold", "-w", one.name, "-o", "/dev/null", "--wrap", "sleep 600")
    assert hold.returncode == 0, hold.stderr  # node 1 busy: the run starts on node 2
    try:
        with launch_resume_report(cluster, isolated, env, *options) as launcher:
            job, node = the_job(cluster)
            assert node == two.name
            cluster.kill_node(two)  # its slurmd and every process on it, at once
            cluster.run(one, "scancel", "-n", "hold")  # node 1 free for the requeued job
            with requeued_jobs_released(cluster):  # once Slurm has found node 2 down (SlurmdTimeout, 10 s here)
                output, _ = launcher.communicate(timeout=JOB_TIMEOUT_S)
        assert f"on node  resume_test/encoder  (job {job}: {two.name})" in output
        if requeue:
            assert launcher.returncode == 0, with_job_logs(output, isolated)
            assert f"requeued resume_test/encoder  (job {job} left {two.name}, try 2)" in output
        else:
            assert launcher.returncode == 1, output[-3000:]
            last = output.strip().splitlines()[-1]
            assert last.startswith("error: run encoder (`experiments/vicreg.py with smoke ") and last.endswith(
                f"`) was lost on {two.name}: its job {job} ended NODE_FAIL and left no result; the completed runs "
                "stay, run the same command again to finish"), last  # fmt: skip
            again = cluster.run(one, *cli_with_report("resume_report", "--executor", "slurm", "--cpus-per-job", "1",
                                                      "--time-min", "10", "--jobs-dir", str(isolated / "jobs"),
                                                      "--out", str(isolated / "slurm.pdf")),
                                env=env, cwd=REPO, timeout=JOB_TIMEOUT_S)  # fmt: skip
            assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        runs = sorted(FileRunStore(isolated / "runs").runs(), key=lambda r: int(r.id))
        assert [r.status for r in runs] == ["RUNNING", "COMPLETED"]  # killed with its node: no chance to record
        lost, resumed = runs
        assert resumed.info["earlier_tries"] == [lost.id] and resumed.info["resumed_from_epoch"] >= 1
        assert report_numbers(isolated / "slurm.pdf") == report_numbers(inline)
    finally:
        cluster.run(one, "scancel", "-n", "hold")
        cluster.revive(two)


def cli_with_report(module: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """``lfr report`` of the test report in ``tests/<module>.py``, as a command (see cli_with_report.py)."""
    return [sys.executable, str(REPO / "tests" / "cli_with_report.py"), module, "report",
            importlib.import_module(module).NAME, "--scale", "smoke", *args]  # fmt: skip

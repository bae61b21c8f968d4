"""Runs that cannot lie: data identity in every run and checkpoint, one process per
configuration, stale runs shown as such, SIGTERM in one line."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_experiment, skip_or_fail, statuses, wait_until
from sacred.observers import FileStorageObserver

from lfr_report.data import DATASETS, identity, load_dataset
from lfr_report.errors import Busy, DataError
from lfr_report.evaluate import ProbeResult
from lfr_report.running.runner import find_or_run, load_experiment
from lfr_report.ssl import train
from lfr_report.tracking import lock
from lfr_report.tracking.observers import interrupts_deferred, stop_on_signals
from lfr_report.tracking.store import FileRunStore

REPO = Path(__file__).resolve().parents[1]
QUIET = {"--loglevel": "ERROR"}


def write_cifar(directory: Path, seed: int, per_batch: int = 20, labels=None, meta: bytes | None = None) -> Path:
    """A CIFAR-10 python folder of ``per_batch`` random images per batch."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = list(np.arange(per_batch) % 10) if labels is None else labels
        with (directory / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": batch_labels}, f)
    if meta is None:
        with (directory / "batches.meta").open("wb") as f:
            pickle.dump({b"label_names": [n.encode() for n in DATASETS["cifar10"].classes]}, f)
    else:
        (directory / "batches.meta").write_bytes(meta)
    return directory


# --- data identity ----------------------------------------------------------------------


def test_two_cifar_folders_have_different_fingerprints_and_each_is_hashed_once(isolated, monkeypatch):
    a = write_cifar(isolated / "a" / "cifar-10-batches-py", seed=1)
    write_cifar(isolated / "b" / "cifar-10-batches-py", seed=2)
    monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "a"))
    first = load_dataset("cifar10", "test").fingerprint
    monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "b"))
    other = load_dataset("cifar10", "test").fingerprint
    assert len(first) == 16 and first != other
    cached = json.loads(identity.cache_file().read_text())
    assert str((a / "data_batch_1").resolve()) in cached
    # A second read costs a stat: no file is opened for hashing while sizes and mtimes hold.
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self.name) or real_open(self, *a, **k))
    assert identity.directory_fingerprint(a) == first and opened == ["file-hashes.json"]  # the cache only
    # Another content (same size, new mtime) is another fingerprint.
    (a / "test_batch").write_bytes((a / "test_batch").read_bytes()[::-1])
    assert identity.directory_fingerprint(a) != first


def test_a_file_rewritten_with_its_size_and_mtime_restored_is_hashed_again(isolated):
    """``cp -p``, ``rsync -t`` or an archive re-extracted with its stored times: the same path,
    size and modification time, other content. The cache must not answer with the old hash."""
    folder = isolated / "files"
    folder.mkdir()
    data = folder / "images.bin"
    data.write_bytes(b"\x01" * 4096)
    before = data.stat()
    first = identity.directory_fingerprint(folder)
    time.sleep(0.02)  # the kernel's clock for inode times ticks every few milliseconds
    data.write_bytes(b"\x02" * 4096)  # a corrected file, then its old times put back
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_size == before.st_size and data.stat().st_mtime_ns == before.st_mtime_ns
    cache = identity.cache_file()
    cache.rename(cache.with_suffix(".old"))  # a fresh cache gives the content's own fingerprint
    fresh = identity.directory_fingerprint(folder)
    cache.with_suffix(".old").rename(cache)
    assert fresh != first and identity.directory_fingerprint(folder) == fresh


def _vicreg_on_cifar(updates=None):
    ex = load_experiment("vicreg")
    config = {"data.name": "cifar10", "data.train_size": None, "data.test_size": None, "batch_size": 32,
              "tsne_points": 20, **(updates or {})}  # fmt: skip
    return ex, config


def test_a_checkpoint_made_on_other_files_is_not_resumed_and_a_run_on_other_files_not_reused(
    isolated, monkeypatch, capsys
):
    write_cifar(isolated / "a" / "cifar-10-batches-py", seed=1)
    write_cifar(isolated / "b" / "cifar-10-batches-py", seed=2)
    ex, config = _vicreg_on_cifar()
    observer = FileStorageObserver(str(isolated / "runs"))
    ex.observers.append(observer)
    store = FileRunStore(isolated / "runs")
    # What is tested is training and reuse: the probes (a 3072-pixel whitening takes tens of
    # seconds on a loaded CPU) and t-SNE are replaced by quick stand-ins.
    module = sys.modules["lfr_experiments.vicreg"]
    monkeypatch.setattr(module, "run_probe", lambda *a: ProbeResult(0.5, 0.5, 1))
    monkeypatch.setattr(module, "tsne_2d", lambda points, seed: np.zeros((len(points), 2)))
    try:
        monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "a"))
        # A run killed after its first checkpoint: here in the probe, the checkpoint stays.
        with monkeypatch.context() as patch:
            patch.setattr(module, "run_probe", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
            with pytest.raises(KeyboardInterrupt):
                ex.run(named_configs=["smoke"], config_updates=config, options=QUIET)
        assert len(list((isolated / "checkpoints").glob("vicreg-*.pt"))) == 1
        monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "b"))
        on_b = ex.run(named_configs=["smoke"], config_updates=config, options=QUIET)
        assert on_b.info["resumed_from_epoch"] == 0 and on_b.status == "COMPLETED"
        assert "made on other data files" in capsys.readouterr().err
        monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "a"))
        on_a = ex.run(named_configs=["smoke"], config_updates=config, options=QUIET)
        assert on_a.info["resumed_from_epoch"] == 1  # its own checkpoint was kept for it
        fingerprints = {r.id: r.info["data_fingerprints"]["cifar10"] for r in store.runs()}
        assert fingerprints[str(on_a._id)] != fingerprints[str(on_b._id)]
    finally:
        ex.observers.remove(observer)
    # The report runner reuses the run made on the files here now, not the newer one on b.
    found = find_or_run(store, "vicreg", ["smoke"], config)
    assert found.id == str(on_a._id)
    monkeypatch.setenv("LFR_DATA_DIR", str(isolated / "b"))
    identity._known.clear()  # a new process: nothing read yet
    assert find_or_run(store, "vicreg", ["smoke"], config).id == str(on_b._id)


# --- bad data that loads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [17] * 20}, r"data_batch_1: label 17 is outside the classes 0\.\.9"),
        ({"labels": [0] * 19}, r"data_batch_1: 19 labels for 20 images"),
        ({"meta": b"garbage"}, r"batches\.meta: not a CIFAR-10 meta file"),
        ({"meta": pickle.dumps({b"label_names": [b"cat"]})}, r"batches\.meta: names 1 classes"),
    ],
)
def test_bad_cifar_labels_or_meta_are_one_line_naming_the_file(isolated, kwargs, message):
    write_cifar(isolated / "data" / "cifar-10-batches-py", seed=1, **kwargs)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset("cifar10", "train")
    assert "\n" not in str(caught.value)


# --- one process per configuration ---------------------------------------------------------


def test_a_second_process_is_refused_naming_the_pid_and_the_lock_goes_with_the_run(isolated):
    path = isolated / "checkpoints" / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from lfr_report.tracking import lock; "
         f"lock.acquire(Path({str(path)!r})); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=rf"pid {holder.pid} is running this configuration now"):
            lock.acquire(path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    lock.acquire(path)  # the holder is gone (its kernel lock with it): free again
    lock.acquire(path)  # and this process may ask again for what it holds
    lock.release(path)
    assert not path.exists()


def test_checkpoint_path_takes_the_configuration_lock(isolated):
    config = {"seed": 0}
    train.checkpoint_path("vicreg", config)
    held = [p for p in (isolated / "checkpoints").glob("*.lock")]
    assert len(held) == 1 and held[0].read_text().strip() == str(os.getpid())
    train.remove_checkpoints("vicreg", config)
    assert not list((isolated / "checkpoints").glob("*.lock"))


def _vicreg_cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "vicreg.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


def test_a_second_identical_run_is_refused_naming_the_first_and_never_shares_its_checkpoint(isolated):
    args = ("with", "smoke", "epochs=500", "data.train_size=128", "data.test_size=64", "tsne_points=50")
    first = _vicreg_cli(*args, cwd=isolated)
    wait_until(lambda: list((isolated / "checkpoints").glob("*.lock")), "the first run's lock", first)
    second = _vicreg_cli(*args, cwd=isolated)
    _, err = second.communicate(timeout=600)
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=600)
    assert (second.returncode, first.returncode) == (1, 130), (err, first_err)
    assert err.strip().splitlines()[-1].startswith(f"lfr_report.errors.Busy: pid {first.pid} is running this "
                                                   "configuration now (lock "), err  # fmt: skip
    assert "Traceback" not in err
    assert statuses(isolated / "runs") == ["FAILED", "INTERRUPTED"]


@pytest.mark.parametrize("executor", ["inline", "local"])
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_lfr_report_stopped_mid_run_exits_130_leaving_the_run_interrupted_and_the_pdf_intact(isolated, how, executor):
    """``kill`` (SIGTERM to the report's process) and Ctrl-C (SIGINT to its whole process group,
    as a terminal sends it) while the report's one run trains: exit 130 in one line, the run
    recorded INTERRUPTED, the earlier PDF untouched; the same command then resumes the run."""
    import resume_report

    templates = isolated / "templates"
    templates.mkdir()
    (templates / f"{resume_report.NAME}.html").write_text(resume_report.TEMPLATE)
    out = isolated / "reports" / "resume_test.pdf"
    out.parent.mkdir()
    out.write_bytes(b"%PDF-1.7 an earlier build")
    command = [sys.executable, str(REPO / "tests" / "cli_with_report.py"), "resume_report", "report", resume_report.NAME,
               "--scale", "smoke", "--executor", executor, "--jobs-dir", str(isolated / "jobs"), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "LFR_TEMPLATES_DIR": str(templates), "LFR_TEST_RESUME_EPOCHS": "4"}
    proc = subprocess.Popen(command, cwd=isolated, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    wait_until(lambda: list((isolated / "checkpoints").glob("*.pt")), "the run's first checkpoint", proc)
    if how == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    [run] = FileRunStore(isolated / "runs").runs()
    assert run.status == "INTERRUPTED"
    assert out.read_bytes() == b"%PDF-1.7 an earlier build"
    again = subprocess.run(command, cwd=isolated, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = [r for r in FileRunStore(isolated / "runs").runs() if r.status == "COMPLETED"]
    assert len(resumed) == 1 and resumed[0].info["resumed_from_epoch"] >= 1
    assert out.read_bytes().startswith(b"%PDF") and b"an earlier build" not in out.read_bytes()


@contextlib.contextmanager
def _small_disk(folder: Path, size: str):
    """``folder`` as a tmpfs of ``size`` (needs root): a disk that fills."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                             text=True)  # fmt: skip
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


SMALL_VICREG = ("with", "smoke", "data.train_size=128", "data.test_size=64", "tsne_points=50")


def _vicreg(isolated: Path, **env: str) -> subprocess.CompletedProcess:
    return run_experiment("vicreg.py", *SMALL_VICREG, cwd=isolated, env={"PYTHONPATH": str(REPO), **env})


def test_a_disk_that_fills_during_a_run_fails_it_in_one_line_and_leaves_no_half_checkpoint(isolated):
    """Checkpoints on a 64 KiB tmpfs: the first epoch's checkpoint does not fit. The run stops
    FAILED with one line naming the file and the fix, nothing half-written stays to be resumed
    from, and the same command with room completes."""
    with _small_disk(isolated / "small", "64k") as small:
        done = _vicreg(isolated, LFR_CHECKPOINT_DIR=str(small))
        assert done.returncode == 1, done.stderr[-2000:]
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert "cannot write checkpoint " + str(small) in last and "no space left on its disk" in last, last
        assert "LFR_CHECKPOINT_DIR" in last
        assert statuses(isolated / "runs") == ["FAILED"]
        assert not [p.name for p in small.iterdir() if not p.name.endswith(".lock")]  # no checkpoint, no temporary
    again = _vicreg(isolated)
    assert again.returncode == 0, again.stderr[-2000:]
    assert statuses(isolated / "runs") == ["COMPLETED", "FAILED"]


def test_a_runs_disk_that_fills_while_the_run_is_recorded_never_leaves_it_completed(isolated):
    """The run store on a 300 KiB tmpfs: the run's sources and record fit, its encoder.pt does not.
    Sacred would drop the failed observer with a warning and still record COMPLETED (exit 0), a run
    with a cut artifact that a report would reuse; it is recorded FAILED, in one line, exit 1."""
    with _small_disk(isolated / "small", "300k") as small:
        done = _vicreg(isolated, LFR_RUNS_DIR=str(small))
        assert done.returncode == 1, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: could not record the run's artifact (") and "No space left on device" in last
        assert "it is recorded FAILED: free space where runs are stored" in last, last
        assert statuses(small) == ["FAILED"]
        assert FileRunStore(small).runs()[0].status == "FAILED"  # what a report sees: not a run to reuse
    again = _vicreg(isolated)
    assert again.returncode == 0 and statuses(isolated / "runs") == ["COMPLETED"], again.stderr[-2000:]


_REPORT_EIGENMAPS = """
import sys
from lfr_report.running.runner import find_or_run
from lfr_report.tracking.store import FileRunStore
print(find_or_run(FileRunStore(sys.argv[1]), "eigenmaps", ["smoke"]).id, flush=True)
"""

_HOLD_EIGENMAPS_LOCK = """
import sys
from lfr_report.running.runner import expected_config, load_experiment
from lfr_report.tracking import lock
lock.acquire(lock.for_config("eigenmaps", expected_config(load_experiment("eigenmaps"), ["smoke"])))
print("held", flush=True)
sys.stdin.read()
"""


def _python(code: str, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


def test_two_reports_at_once_run_an_experiment_without_checkpoints_once(isolated):
    """Two reports wanting the same checkpoint-less run while a third process runs it: both
    wait, one line each, and they end with one run between them, not three or two."""
    holder = _python(_HOLD_EIGENMAPS_LOCK, cwd=isolated)
    assert holder.stdout.readline().strip() == "held", holder.communicate()
    reports = [_python(_REPORT_EIGENMAPS, str(isolated / "runs"), cwd=isolated) for _ in range(2)]
    for report in reports:
        line = report.stderr.readline()
        while line and "waiting for it to finish" not in line:
            line = report.stderr.readline()
        assert line.startswith(f"pid {holder.pid} is running `experiments/eigenmaps.py with smoke` now"), line
    holder.communicate(input="")  # the holder ends: its lock is free
    ids = []
    for report in reports:
        out, err = report.communicate(timeout=600)
        assert report.returncode == 0, err
        ids.append(out.strip().splitlines()[-1])
    assert ids[0] == ids[1] and statuses(isolated / "runs") == ["COMPLETED"]
    assert not list((isolated / "checkpoints").glob("*.lock"))  # released when the runs ended


def test_a_run_without_checkpoints_takes_its_configuration_lock(isolated):
    ex = load_experiment("eigenmaps")
    held = lock.for_config("eigenmaps", dict(ex.run(named_configs=["smoke"], options=QUIET).config))
    try:
        assert held.read_text().strip() == str(os.getpid())  # begin_run took it; the process holds it
    finally:
        lock.release(held)


# --- how a run ends when it is killed --------------------------------------------------------


def _sleeper(tmp_path: Path, *args: str, script: str | None = None) -> subprocess.Popen:
    """test_store's sleeper experiment (or ``script``), started (``args``: after the script, such
    as ``with seed=0``); returns once its run is recorded RUNNING."""
    from test_store import SLEEPER

    path = tmp_path / "sleeper.py"
    path.write_text(script or SLEEPER)
    proc = subprocess.Popen([sys.executable, str(path), *args, "-F", str(tmp_path / "runs")], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_sigterm_is_one_line_and_the_run_interrupted(isolated):
    proc = _sleeper(isolated)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == ("sleeper: interrupted (stopped by signal SIGTERM); the run is recorded "
                                            "INTERRUPTED and the same command resumes it from its last checkpoint")  # fmt: skip
    assert FileRunStore(isolated / "runs").get("1").status == "INTERRUPTED"


# Sacred's first step once a run is stopped, with the signal the stopped job gets next: scancel's
# SIGTERM reaches torchrun's workers and torchrun sends them SIGTERM again; a terminal's Ctrl-C
# reaches torchrun and its workers both, and torchrun sends SIGINT again.
SIGNALLED_AGAIN = """
import os, signal, time
import sacred.run

stop_heartbeat = sacred.run.Run._stop_heartbeat

def signalled_again(self):
    os.kill(os.getpid(), signal.{again})
    time.sleep(0.5)  # the handler runs by now
    stop_heartbeat(self)

sacred.run.Run._stop_heartbeat = signalled_again
"""


@pytest.mark.parametrize("first, again", [("SIGTERM", "SIGTERM"), ("SIGINT", "SIGINT"), ("SIGINT", "SIGTERM")],
                         ids=["scancel-then-torchrun", "ctrl-c-then-torchrun", "ctrl-c-then-kill"])  # fmt: skip
def test_a_stop_signal_that_comes_again_while_the_run_stops_still_records_it_interrupted(isolated, first, again):
    """The second signal came while Sacred handled the first, before its observers were called:
    the run stayed RUNNING and the process hung on its heartbeat until SIGKILL (CI, two hosts)."""
    from test_store import SLEEPER

    script = SIGNALLED_AGAIN.format(again=again) + SLEEPER
    proc = _sleeper(isolated, script=script)
    proc.send_signal(getattr(signal, first))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert FileRunStore(isolated / "runs").get("1").status == "INTERRUPTED", err
    assert f"{again} ignored: already stopping ({first} came first)" in err
    assert "Traceback" not in err, err


# A run whose main function ends (``{end}``), signalled during Sacred's last heartbeat, which it
# writes once the main function has returned or raised: when one rank fails, torchrun's SIGTERM
# reaches rank 0 about then.
SIGNALLED_AT_THE_END = """
import os, signal, time
import sacred.run
from sacred import Experiment
from lfr_report.tracking.observers import record_uninterrupted, run_commandline

emit_heartbeat = sacred.run.Run._emit_heartbeat

def last_heartbeat_signalled(self):
    if self._stop_heartbeat_event.is_set():  # the last one
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the handler runs by now
    emit_heartbeat(self)

sacred.run.Run._emit_heartbeat = last_heartbeat_signalled
ex = Experiment("ending")
ex.pre_run_hook(record_uninterrupted)

@ex.main
def main():
    {end}

if __name__ == "__main__":
    run_commandline(ex)
"""


@pytest.mark.parametrize("end, status, code", [
    ("raise RuntimeError('planted failure: the other rank closed the connection')", "FAILED", 1),
    ("return 3", "INTERRUPTED", 130),
], ids=["failed", "returned"])  # fmt: skip
def test_a_stop_signal_during_the_last_heartbeat_never_leaves_the_run_running(isolated, end, status, code):
    """A failed run is recorded FAILED (the signal is ignored: the process ends anyway); a run whose
    main function returned is stopped before it is recorded COMPLETED. Before, the signal escaped
    Sacred and the run stayed RUNNING (CI: tests/test_distributed.py, a failing rank)."""
    script = isolated / "ending.py"
    script.write_text(SIGNALLED_AT_THE_END.format(end=end))
    done = run_experiment(script, "-F", str(isolated / "runs"), cwd=isolated)
    assert done.returncode == code, done.stderr[-3000:]
    assert statuses(isolated / "runs") == [status], done.stderr[-3000:]
    if status == "FAILED":
        assert "SIGTERM ignored: already stopping (the run failed)" in done.stderr
        assert "planted failure" in json.loads((isolated / "runs" / "1" / "run.json").read_text())["fail_trace"][-1]


def test_a_sigkilled_run_shows_as_probably_dead_in_lfr_runs_and_reports_skip_it(isolated, monkeypatch, capsys):
    from lfr_report import cli, registry
    from lfr_report.running import runner
    from lfr_report.tracking import store as store_module

    proc = _sleeper(isolated, "with", "seed=0")
    # the sleeper as an experiment a report could ask for: the runner looks for runs of its config
    monkeypatch.setenv("LFR_EXPERIMENTS_DIR", str(isolated))
    monkeypatch.setitem(registry.EXPERIMENTS, "sleeper", "sleeps")
    store = FileRunStore(isolated / "runs")
    cli.main(["runs"])
    assert " RUNNING " in capsys.readouterr().out  # alive: its heartbeat is fresh
    assert runner.find(store, "sleeper", [], {"seed": 0}) is None  # running: not reused, and not called dead
    assert "probably dead" not in capsys.readouterr().err
    proc.kill()
    proc.wait(timeout=60)
    run = store.get("1")
    assert run.status == "RUNNING" and not run.probably_dead  # nobody could record its end; silent for seconds only
    monkeypatch.setattr(store_module, "STALE_AFTER_S", 0)  # as if five minutes had passed
    time.sleep(0.01)
    cli.main(["runs"])
    assert " probably dead " in capsys.readouterr().out
    cli.main(["runs", "show", "1"])
    assert "sleeper, probably dead" in capsys.readouterr().out
    # a report's runner passes over it with one line (and would run the config afresh)
    assert runner.find(store, "sleeper", [], {"seed": 0}) is None
    assert capsys.readouterr().err.strip().splitlines() == [
        "run 1 of sleeper is RUNNING with no heartbeat for over 5 minutes: probably dead, skipped"
    ]
    assert runner.find(store, "sleeper", [], {"seed": 1}) is None  # another config: nothing said of run 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("variable", ["LFR_RUNS_DIR", "LFR_CHECKPOINT_DIR"])
def test_a_folder_a_run_cannot_write_is_one_line_before_anything_is_recorded(isolated, variable):
    """A runs or checkpoints folder that cannot be made (here: below a file; in the image, a
    volume owned by another user) stops an experiment and a report before any run."""
    blocker = isolated / "a-file"
    blocker.write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO), variable: str(blocker / "sub")}
    for command in ([str(REPO / "experiments" / "eigenmaps.py"), "with", "smoke"],
                    ["-m", "lfr_report", "report", "vicreg", "--scale", "smoke"]):  # fmt: skip
        done = subprocess.run([sys.executable, *command], cwd=isolated, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: cannot write in {blocker / 'sub'} ({variable}) as uid {os.getuid()}: Not a directory; make it "
            f"writable (chown {os.getuid()} {blocker / 'sub'}) or set {variable} to a folder you can write"
        ]
        assert FileRunStore(isolated / "runs").runs() == []


# --- smaller ones -----------------------------------------------------------------------------


def test_neighbours_from_a_failed_run_says_so_before_a_run_is_recorded(isolated):
    from test_experiment import _encoder_run

    from lfr_report.errors import ConfigError
    from lfr_report.running.runner import expected_config

    failed = _encoder_run(isolated, fail=True)
    with pytest.raises(ConfigError, match=f"^run {failed} is FAILED, not COMPLETED"):
        expected_config(load_experiment("vicreg"), ["smoke", "no_generated_neighbours"], {"neighbours_from": failed})


def test_vicreg_and_downstream_draw_the_same_subsets_from_the_config_seed(smoke_runs):
    """Sacred gives captured functions a ``_seed`` derived from the run's: the subsets must
    come from the config seed itself, as ``splits`` (downstream's) draws them."""
    from lfr_report.ingredients.data import splits
    from lfr_report.tracking.artifacts import read_npz

    store = FileRunStore(smoke_runs)
    run = store.latest("vicreg", {"views": "augment", "mu": 25.0})
    data = run.config["data"]
    assert data["test_size"] < 512  # a real subset of the synthetic test split
    _, test = splits(data["name"], data["train_size"], data["test_size"], run.config["seed"])
    stored = read_npz(store, run.id, "test_representations.npz")["labels"]
    np.testing.assert_array_equal(stored, test.labels.numpy())
    other = splits(data["name"], data["train_size"], data["test_size"], run.config["seed"] + 7)[1]
    assert not np.array_equal(stored, other.labels.numpy())  # the labels do tell subsets apart


def test_every_split_of_a_data_set_has_its_fingerprint():
    """A run that read only one split must match ``dataset_fingerprint``, which reads another."""
    from lfr_report.data.datasets import dataset_fingerprint

    for name in ("synthetic", "digits"):  # synthetic's splits name different seeds
        train, test = load_dataset(name, "train"), load_dataset(name, "test")
        assert train.fingerprint == test.fingerprint == dataset_fingerprint(name)


def test_a_sigterm_during_a_checkpoint_write_waits_for_the_write_then_interrupts(tmp_path):
    """torch.save turns an interrupt inside its writer into a RuntimeError; the write finishes first."""
    written: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), stop_on_signals():
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler has run by now, had it not been held
            torch.save({"w": torch.ones(3)}, tmp_path / "ckpt.pt")
            written.append("done")
        written.append("after the block")  # never reached: the held SIGTERM acts as the block ends
    assert written == ["done"] and torch.load(tmp_path / "ckpt.pt")["w"].sum() == 3
    assert signal.getsignal(signal.SIGTERM) == before  # both blocks put back what they replaced


def test_a_rerun_after_a_stopped_try_names_the_try(isolated):
    """What a requeued Slurm job does (tests/test_two_hosts.py on a real cluster): the run of a
    config whose earlier try did not complete lists that try, so the store links them."""
    store = FileRunStore(isolated / "runs")
    first = find_or_run(store, "eigenmaps", ["smoke"])
    record = isolated / "runs" / first.id / "run.json"
    record.write_text(record.read_text().replace('"status": "COMPLETED"', '"status": "INTERRUPTED"'))
    again = find_or_run(store, "eigenmaps", ["smoke"])
    assert again.id != first.id and again.status == "COMPLETED"
    assert again.info["earlier_tries"] == [first.id]
    assert "earlier_tries" not in first.info  # a first try names none

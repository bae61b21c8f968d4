"""The run store reads back what Sacred's observers wrote, the same way for files and MongoDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mongomock
import mongomock.gridfs
import pytest
from sacred import Experiment
from sacred.observers import FileStorageObserver, MongoObserver

from lfr_report.errors import StoreError
from lfr_report.tracking import store as store_module
from lfr_report.tracking.store import (
    FileRunStore,
    MongoRunStore,
    config_matches,
    open_store,
    redact_url,
    with_added,
)

REPO = Path(__file__).resolve().parents[1]


def tiny_experiment() -> Experiment:
    ex = Experiment("tiny")
    ex.add_config(scale="smoke", data={"name": "synthetic"}, fail=False, tmp_dir="")

    @ex.main
    def main(_run, fail, tmp_dir):
        _run.info["device"] = "cpu"
        for step in range(3):
            _run.log_scalar("train_loss", 1.0 / (step + 1), step)
        _run.log_scalar("probe_test_accuracy", 0.75)
        artifact = Path(tmp_dir) / "weights.bin"
        artifact.write_bytes(b"\x00\x01weights")
        _run.add_artifact(str(artifact), "weights.bin")
        if fail:
            raise RuntimeError("boom")
        return {"probe_test_accuracy": 0.75}

    return ex


def record(ex: Experiment, observer, tmp_path: Path, **updates):
    ex.observers.append(observer)
    try:
        return ex.run(config_updates={"tmp_dir": str(tmp_path), **updates}, options={"--loglevel": "ERROR"})
    finally:
        ex.observers.remove(observer)


@pytest.fixture(params=["file", "mongo"])
def store_and_observer(request, tmp_path):
    """A fresh store and a factory for observers writing into it."""
    if request.param == "file":
        root = tmp_path / "store"
        return FileRunStore(root), lambda: FileStorageObserver(str(root))
    mongomock.gridfs.enable_gridfs_integration()
    db = mongomock.MongoClient().db
    import gridfs

    def observer():
        return MongoObserver.create_from(runs_collection=db.runs, fs=gridfs.GridFS(db), metrics_collection=db.metrics)

    return MongoRunStore(db), observer


def test_completed_run_reads_back(store_and_observer, tmp_path):
    store, observer = store_and_observer
    record(tiny_experiment(), observer(), tmp_path)
    [run] = store.find("tiny")
    assert run.status == "COMPLETED" and run.experiment == "tiny"
    assert run.config["data"]["name"] == "synthetic" and run.info["device"] == "cpu"
    assert run.result == {"probe_test_accuracy": 0.75}
    metrics = store.metrics(run.id)
    assert metrics["train_loss"].steps == [0, 1, 2]
    assert metrics["train_loss"].values == pytest.approx([1.0, 0.5, 1 / 3])
    assert store.artifact(run.id, "weights.bin") == b"\x00\x01weights"
    assert "weights.bin" in run.artifacts
    assert store.get(run.id).id == run.id


def test_latest_skips_failed_runs_and_matches_config(store_and_observer, tmp_path):
    store, observer = store_and_observer
    ex = tiny_experiment()
    record(ex, observer(), tmp_path)
    with pytest.raises(RuntimeError):
        record(ex, observer(), tmp_path, fail=True)
    statuses = sorted(run.status for run in store.find("tiny"))
    assert statuses == ["COMPLETED", "FAILED"]
    latest = store.latest("tiny", {"data": {"name": "synthetic"}, "scale": "smoke"})
    assert latest is not None and latest.status == "COMPLETED"
    assert store.latest("tiny", {"scale": "default"}) is None
    assert store.latest("other") is None


def test_missing_artifact_and_run_are_store_errors(store_and_observer, tmp_path):
    store, observer = store_and_observer
    record(tiny_experiment(), observer(), tmp_path)
    run = store.find("tiny")[0]
    with pytest.raises(StoreError, match=r"no artifact 'nope\.npz'"):
        store.artifact(run.id, "nope.npz")
    with pytest.raises(StoreError, match="no run with id '999'"):
        store.get("999")


def test_config_matching_is_by_dotted_key_and_json_value():
    config = {"data": {"name": "x", "train_size": None}, "betas": [0.9, 0.999], "scale": "default"}
    assert config_matches(config, {"data.name": "x"})
    assert config_matches(config, {"data": {"name": "x"}, "betas": (0.9, 0.999)})
    assert not config_matches(config, {"data": {"name": "y"}})
    assert not config_matches(config, {"missing": 1})
    assert config_matches(config, {"data": {"train_size": None}})


def test_empty_file_store_has_no_runs(tmp_path):
    assert FileRunStore(tmp_path / "absent").runs() == []


def test_unreachable_mongo_is_one_line(monkeypatch):
    monkeypatch.setattr(store_module, "MONGO_TIMEOUT_MS", 200)
    monkeypatch.setenv("LFR_MONGO_URL", "mongodb://lfr:secret@127.0.0.1:9/lfr")
    with pytest.raises(StoreError) as err:
        open_store()
    message = str(err.value)
    assert "cannot reach MongoDB" in message and "secret" not in message and "\n" not in message


def test_redact_url_hides_the_password_only():
    assert redact_url("mongodb://u:pw@host:27017/db") == "mongodb://u:***@host:27017/db"
    assert redact_url("mongodb://host/db") == "mongodb://host/db"


def test_open_store_defaults_to_the_runs_dir(isolated):
    store = open_store()
    assert isinstance(store, FileRunStore) and store.root == isolated / "runs"


SLEEPER = """
import time

from sacred import Experiment

from lfr_report.tracking.observers import run_commandline

ex = Experiment("sleeper")


@ex.main
def main():
    print("started", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    run_commandline(ex)
"""


SIGNALLED_HELPERS = """
import os
import signal

from sacred import Experiment

from lfr_report.tracking.observers import run_commandline

ex = Experiment("signalled")


@ex.main
def main():
    children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
    for child in children:  # what Slurm does to every process of the step: its warning signal
        os.kill(int(child), signal.SIGUSR2)
    for child in children:
        os.waitpid(int(child), 0)
    for i in range(200):
        print("line", i, flush=True)
    return len(children)


if __name__ == "__main__":
    run_commandline(ex)
"""


def test_in_a_slurm_job_a_signal_to_every_process_of_the_step_leaves_the_runs_output_working(tmp_path):
    """Slurm signals every process of a job step. Sacred's default capture pipes the run's output
    through two ``tee`` processes, which that signal kills; the run's next print then failed with
    BrokenPipeError and the run was recorded FAILED. In a Slurm job the output is captured in Python."""
    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED_HELPERS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLURM_JOB_ID": "7"}
    done = subprocess.run([sys.executable, str(script), "-F", str(tmp_path / "runs")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = FileRunStore(tmp_path / "runs").get("1")
    assert run.status == "COMPLETED"
    assert (tmp_path / "runs" / "1" / "cout.txt").read_text().count("line ") == 200
    assert done.stdout.count("line ") == 200  # and it still reaches the terminal


def test_a_signal_during_the_final_write_waits_for_it_so_the_record_is_whole(tmp_path):
    """torchrun's SIGTERM reached rank 0 while the store wrote its FAILED status and left an empty
    run.json (seen in CI). The signal now waits for the write, and then, the run having failed, is
    ignored (``observers.record_uninterrupted``): FAILED on disk, the failure's exit status 1."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "signalled_failure.py"), str(tmp_path / "runs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "SIGTERM ignored: already stopping (the run failed)" in done.stderr
    run = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())
    assert run["status"] == "FAILED" and "planted failure" in "".join(run["fail_trace"])


def test_sigterm_marks_the_run_interrupted_not_running(tmp_path):
    """`kill` or `docker stop` must not leave a run RUNNING in the store for ever."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), "-F", str(tmp_path / "runs")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the run is started once the script prints
        lines.append(line)
        if line.strip() == "started":
            break
    assert lines and lines[-1].strip() == "started", "".join(lines)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest  # stopped, as after Ctrl-C: not a failure, not a success
    run = FileRunStore(tmp_path / "runs").get("1")
    assert run.status == "INTERRUPTED", "".join(lines) + rest


def test_a_key_added_later_matches_older_runs_only_at_the_value_they_behaved_as():
    older = {"lr": 0.1, "probe": {"epochs": 50}}  # recorded before probe.optimizer existed
    added = {"probe.optimizer": "adam"}
    assert config_matches(older, {"lr": 0.1, "probe": {"epochs": 50, "optimizer": "adam"}}, added)
    assert not config_matches(older, {"lr": 0.1, "probe": {"epochs": 50, "optimizer": "sgd"}}, added)
    assert not config_matches(older, {"lr": 0.1, "probe": {"epochs": 50, "optimizer": "adam"}})  # nothing declared
    newer = {"lr": 0.1, "probe": {"epochs": 50, "optimizer": "sgd"}}  # a recorded value wins over the default
    assert not config_matches(newer, {"lr": 0.1, "probe": {"epochs": 50, "optimizer": "adam"}}, added)


def test_the_probes_added_options_leave_every_stored_run_reusable():
    from lfr_report.checks import added_keys
    from lfr_report.running.runner import expected_config, load_experiment

    ex = load_experiment("vicreg")
    config = expected_config(ex, ["smoke"])
    older = json.loads(json.dumps(config))
    for key in ("optimizer", "momentum", "schedule", "whiten"):
        del older["probe"][key]  # a run recorded before these keys existed
    assert config_matches(older, config, added_keys(ex))
    assert with_added(older, added_keys(ex)) == config  # what a report reads of the older run
    assert not config_matches(older, expected_config(ex, ["smoke"], {"probe.whiten": False}), added_keys(ex))


def _three_runs(isolated: Path) -> Path:
    """Three completed runs of the tiny experiment in the isolated run store."""
    root = isolated / "runs"
    for _ in range(3):
        record(tiny_experiment(), FileStorageObserver(str(root)), isolated, seed=7)
    return root


@pytest.mark.parametrize("damaged", ["run.json", "config.json"])
def test_a_damaged_record_is_named_once_and_the_other_runs_are_listed(isolated, damaged, capsys, monkeypatch):
    root = _three_runs(isolated)
    path = root / "2" / damaged
    path.write_text(path.read_text()[:40])  # cut mid-record, as a full disk or a stopped copy leaves it
    naps = []
    monkeypatch.setattr(store_module.time, "sleep", naps.append)
    store = FileRunStore(root)
    assert [run.id for run in store.runs()] == ["1", "3"]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and f"run 2 is damaged and left out (cannot read {path}:" in warning[0]
    assert "move" in warning[0] and "delete" in warning[0]  # what to do about it
    waited = len(naps)
    assert [run.id for run in store.runs()] == ["1", "3"] and capsys.readouterr().err == ""  # said once
    assert len(naps) == waited  # and not waited for again while it stays as it is
    done = subprocess.run([sys.executable, "-m", "lfr_report", "runs"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()[1:-1]]
    assert sorted(listed) == ["1", "3"] and "run 2 is damaged" in done.stderr  # every run but the damaged one


def test_a_run_whose_metrics_are_cut_short_is_not_reused(isolated, monkeypatch, capsys):
    from lfr_report.running import runner

    root = _three_runs(isolated)
    (root / "3" / "metrics.json").write_text('{"train_loss": {"steps": [0, 1')
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    store = FileRunStore(root)
    monkeypatch.setattr(runner, "load_experiment", lambda name: tiny_experiment())
    monkeypatch.setattr(runner, "same_data", lambda run: True)
    found = runner.find(store, "tiny", updates={"tmp_dir": str(isolated), "seed": 7})
    assert found is not None and found.id == "2"  # the newest one that can be read
    assert "run 3 of tiny is damaged (cannot read" in capsys.readouterr().err

"""The MongoDB path over the wire, against a live server: SecantusDB (a MongoDB-wire-
compatible server from PyPI) started on 127.0.0.1 for the session, or a real MongoDB
when ``LFR_TEST_MONGO_URL`` names one (each test then uses a database of its own; the
``server`` and ``mongo_url`` fixtures are in conftest.py).

Real experiment runs are recorded by Sacred's MongoObserver, copied both ways, and the
VICReg report built from them must carry the same numbers as the one built from the
file store.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import assert_same_runs, report_numbers, run_experiment

from lfr_report.report import vicreg
from lfr_report.tracking.artifacts import read_encoder
from lfr_report.tracking.local_stack import free_port, start_local_mongo, stop
from lfr_report.tracking.store import MONGO_TIMEOUT_MS, FileRunStore, MongoRunStore, StoreError, connect_mongo
from lfr_report.tracking.transfer import copy_runs


def test_experiment_records_metrics_and_artifacts_over_the_wire(mongo_url, isolated):
    done = run_experiment("vicreg.py", "with", "smoke", env={"LFR_MONGO_URL": mongo_url}, cwd=isolated)
    assert done.returncode == 0, done.stderr[-2000:]
    store = MongoRunStore.from_url(mongo_url)
    [run] = store.find("vicreg", "COMPLETED")
    assert f"MongoDB database '{store.db.name}', run {run.id}" in done.stdout
    assert run.config["scale"] == "smoke" and run.info["device"].startswith("cpu")
    metrics = store.metrics(run.id)
    assert metrics["train_loss"].steps == list(range(8))
    assert metrics["probe_test_accuracy"].values[-1] >= 0.3  # chance is 0.1; 0.51 here
    encoder, arch = read_encoder(store, run.id)
    assert arch["dim"] == 16 and sum(p.numel() for p in encoder.parameters()) > 0
    doc = store.db.runs.find_one({"_id": int(run.id)})
    assert {link["name"] for link in doc["info"]["metrics"]} == set(metrics)  # what Omniboard follows
    assert not list((isolated / "runs").iterdir())  # nothing went to the file store


def test_report_from_runs_over_the_wire_and_copied_runs_matches_the_file_store(smoke_store, mongo_url, isolated,
                                                                                 monkeypatch):  # fmt: skip
    from_files = vicreg.REPORT.build(smoke_store, "smoke", isolated / "reports" / "files.pdf")
    numbers = report_numbers(from_files)
    assert len(numbers) > 30

    # Every run the report needs, recorded by MongoObserver over the wire.
    monkeypatch.setenv("LFR_MONGO_URL", mongo_url)
    wire = MongoRunStore.from_url(mongo_url)
    from_wire = vicreg.REPORT.build(wire, "smoke", isolated / "reports" / "wire.pdf")
    assert len(wire.find(status="COMPLETED")) == 10
    assert report_numbers(from_wire) == numbers

    # The file store's runs copied in (ids kept), and the report from them.
    copied_url = mongo_url + "_copy"
    copied = MongoRunStore.from_url(copied_url)
    try:
        assert len(copy_runs(smoke_store, copied).copied) == 10
        assert_same_runs(smoke_store, copied)
        from_copies = vicreg.REPORT.build(copied, "smoke", isolated / "reports" / "copied.pdf")
        assert report_numbers(from_copies) == numbers
        # ... and back: the wire runs into a file store, whole, and a second copy adds nothing.
        back = FileRunStore(isolated / "back")
        assert len(copy_runs(wire, back).copied) == 10
        assert_same_runs(wire, back)
        assert copy_runs(wire, back).copied == []
    finally:
        copied.db.client.drop_database(copied.db.name)


def test_unknown_host_and_wrong_password_fail_fast_before_training(server, isolated, tmp_path):
    """Nothing listening, or credentials the server rejects: one line, exit 1, no run, and the store
    check itself gives up at its 3 s timeout, not pymongo's 30 s (the check timed alone: the whole
    command's time is mostly imports, which a slower machine stretches)."""
    cases = [(f"mongodb://127.0.0.1:{free_port()}/lfr", "cannot reach MongoDB")]  # nothing listening there
    process = None
    if os.environ.get("LFR_TEST_MONGO_URL"):
        parts = urlsplit(os.environ["LFR_TEST_MONGO_URL"])
        if parts.username is not None:  # without credentials there are none to get wrong: the first case only
            netloc = f"{parts.username}:wrong-password@{parts.hostname}:{parts.port or 27017}"
            cases.append((urlunsplit(parts._replace(netloc=netloc)), "rejected the user name or password"))
    else:  # a second SecantusDB with a user and --auth
        port, storage = free_port(), tmp_path / "auth"
        process = start_local_mongo(port, storage)
        connect_mongo(f"mongodb://127.0.0.1:{port}/admin")[0].admin.command("createUser", "lfr", pwd="right",
                                                                           roles=["root"])  # fmt: skip
        stop(process)
        process = start_local_mongo(port, storage, auth=True)
        cases.append((f"mongodb://lfr:wrong-password@127.0.0.1:{port}/lfr?authSource=admin",
                      "rejected the user name or password"))  # fmt: skip
    try:
        for url, message in cases:
            start = time.monotonic()
            with pytest.raises(StoreError, match=message):
                connect_mongo(url)
            # a ceiling, not a timing: well under pymongo's default 30 s wait, which MONGO_TIMEOUT_MS (3 s) replaces
            assert time.monotonic() - start < 25, MONGO_TIMEOUT_MS
            done = run_experiment("vicreg.py", "with", "smoke", env={"LFR_MONGO_URL": url}, cwd=isolated)
            assert done.returncode == 1, done.stderr[-1000:]
            line = done.stderr.strip()
            assert line.startswith("error: ") and message in line and "\n" not in line
            assert "wrong-password" not in line and "Started run" not in done.stderr
        assert not list((isolated / "runs").iterdir())
    finally:
        stop(process)


def test_runs_copy_through_the_cli_to_and_from_mongodb_with_its_filters(smoke_store, mongo_url, tmp_path, capsys):
    from lfr_report.cli import main as lfr

    vicreg_ids = sorted(run.id for run in smoke_store.runs() if run.experiment == "vicreg")
    assert len(vicreg_ids) >= 2 and len(smoke_store.runs()) > len(vicreg_ids)
    assert lfr(["runs", "copy", "--to", mongo_url, "--experiment", "vicreg"]) == 0
    assert f"{len(vicreg_ids)} copied, 0 already there, 0 conflicting" in capsys.readouterr().out
    mongo = MongoRunStore.from_url(mongo_url)
    assert sorted(run.id for run in mongo.runs()) == vicreg_ids
    assert lfr(["runs", "copy", "--to", mongo_url, "--status", "FAILED"]) == 0  # the smoke runs all COMPLETED
    assert "0 copied, 0 already there" in capsys.readouterr().out
    back = tmp_path / "back"  # one chosen run back from MongoDB into a folder of its own
    assert lfr(["runs", "copy", "--from", mongo_url, "--to", str(back), vicreg_ids[0]]) == 0
    assert capsys.readouterr().out.startswith(f"copied run {vicreg_ids[0]}\n")
    assert [run.id for run in FileRunStore(back).runs()] == [vicreg_ids[0]]
    assert FileRunStore(back).metrics(vicreg_ids[0]) == smoke_store.metrics(vicreg_ids[0])
    assert lfr(["runs", "copy", "--from", mongo_url, "--to", mongo_url]) == 1
    assert capsys.readouterr().err.startswith("error: --from and --to are the same store")
    assert lfr(["runs", "copy", "--from", str(tmp_path / "nowhere"), "--to", mongo_url]) == 1
    assert "no such folder of runs" in capsys.readouterr().err
    # a different run under a taken id: refused, then copied under the next free id with --renumber
    other = tmp_path / "other"
    assert lfr(["runs", "copy", "--to", str(other), vicreg_ids[0]]) == 0
    entry = other / vicreg_ids[0] / "run.json"
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "start_time": "2001-01-01T00:00:00"}))
    assert lfr(["runs", "copy", "--from", str(other), "--to", mongo_url]) == 1
    assert f"runs {vicreg_ids[0]}: the target holds other runs" in capsys.readouterr().err
    assert lfr(["runs", "copy", "--from", str(other), "--to", mongo_url, "--renumber"]) == 0
    free = str(max(int(i) for i in vicreg_ids) + 1)
    assert f"copied run {vicreg_ids[0]} as {free}" in capsys.readouterr().out
    assert len(MongoRunStore.from_url(mongo_url).runs()) == len(vicreg_ids) + 1

"""Copying runs between the file store and MongoDB (mongomock here; a live server in
test_live_mongo.py): whole runs, ids kept, idempotent, conflicts reported, and the
copies read back like the originals."""

from __future__ import annotations

import json

import gridfs
import mongomock
import mongomock.gridfs
import pytest
from helpers import assert_same_runs

from lfr_report.cli import main as lfr
from lfr_report.tracking.store import FileRunStore, MongoRunStore
from lfr_report.tracking.transfer import copy_runs


@pytest.fixture
def mongo_store() -> MongoRunStore:
    mongomock.gridfs.enable_gridfs_integration()
    return MongoRunStore(mongomock.MongoClient().lfr)


def test_file_store_to_mongo_and_back_keeps_everything(smoke_runs, mongo_store, tmp_path):
    files = FileRunStore(smoke_runs)
    result = copy_runs(files, mongo_store)
    assert [old for old, new in result.copied if old != new] == []
    assert len(result.copied) == len(files.runs()) == 10
    assert_same_runs(files, mongo_store)

    back = FileRunStore(tmp_path / "back")
    copy_runs(mongo_store, back)
    assert_same_runs(files, back)
    run = files.runs()[0]
    original = json.loads((smoke_runs / run.id / "run.json").read_text())
    copied = json.loads((back.root / run.id / "run.json").read_text())
    assert copied["experiment"]["name"] == original["experiment"]["name"]
    [(name, stored)] = [s for s in copied["experiment"]["sources"] if s[0].endswith(".py")][:1]
    assert (back.root / stored).read_bytes() == (
        smoke_runs / dict(original["experiment"]["sources"])[name]
    ).read_bytes()


def test_mongo_copy_is_what_omniboard_reads(smoke_runs, mongo_store):
    """Omniboard finds a run's metrics through ``info.metrics`` and its files in GridFS."""
    copy_runs(FileRunStore(smoke_runs), mongo_store)
    doc = mongo_store.db.runs.find_one({"_id": 1})
    assert isinstance(doc["_id"], int) and doc["start_time"].year >= 2026
    links = {link["name"]: link["id"] for link in doc["info"]["metrics"]}
    assert links and set(links) == {m["name"] for m in mongo_store.db.metrics.find({"run_id": 1})}
    for name, metric_id in links.items():
        assert str(mongo_store.db.metrics.find_one({"name": name, "run_id": 1})["_id"]) == metric_id
    fs = gridfs.GridFS(mongo_store.db)
    for artifact in doc["artifacts"]:
        assert fs.get(artifact["file_id"]).filename == f"artifact://runs/1/{artifact['name']}"
    assert all(fs.exists(file_id) for _, file_id in doc["experiment"]["sources"])


def test_copying_twice_copies_nothing_new(smoke_runs, mongo_store):
    files = FileRunStore(smoke_runs)
    copy_runs(files, mongo_store)
    again = copy_runs(files, mongo_store)
    assert again.copied == [] and len(again.already_there) == 10
    assert mongo_store.db.runs.count_documents({}) == 10
    assert mongo_store.db.metrics.count_documents({}) == sum(len(files.metrics(r.id)) for r in files.runs())


def test_an_id_held_by_another_run_is_a_conflict_unless_renumbered(smoke_runs, mongo_store, tmp_path):
    files = FileRunStore(smoke_runs)
    copy_runs(files, mongo_store, run_ids=["1"])
    mongo_store.db.runs.update_one({"_id": 1}, {"$set": {"start_time": mongo_store.get("1").start_time and None}})
    result = copy_runs(files, mongo_store, run_ids=["1"])
    assert result.conflicts == ["1"] and result.copied == []
    renumbered = copy_runs(files, mongo_store, run_ids=["1"], renumber=True)
    assert renumbered.copied == [("1", "2")]
    assert mongo_store.metrics("2") == files.metrics("1")


def test_copy_never_takes_running_runs_by_default(smoke_runs, tmp_path, mongo_store):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(smoke_runs, root)
    entry = json.loads((root / "3" / "run.json").read_text())
    (root / "3" / "run.json").write_text(json.dumps({**entry, "status": "RUNNING"}))
    result = copy_runs(FileRunStore(root), mongo_store)
    assert "3" not in [old for old, _ in result.copied] and len(result.copied) == 9


def test_runs_cli_filters_by_config_and_tag_and_prints_metric_columns(smoke_store, capsys):
    root = smoke_store.root
    entry = json.loads((root / "1" / "run.json").read_text())
    (root / "1" / "run.json").write_text(json.dumps({**entry, "omniboard": {"tags": ["best"]}}))
    assert lfr(["runs", "--experiment", "vicreg", "--config", "mu=0.0", "--metric", "probe_test_accuracy"]) == 0
    out = capsys.readouterr().out.splitlines()
    no_variance = smoke_store.find("vicreg", config={"mu": 0.0})
    assert len(no_variance) == 1 and out[-1] == f"1 run(s) in {root}"
    probe = smoke_store.metrics(no_variance[0].id)["probe_test_accuracy"].values[-1]
    assert "probe_test_accuracy" in out[0] and out[1].split()[0] == no_variance[0].id and f"{probe:.4g}" in out[1]
    assert lfr(["runs", "--tag", "best"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["1"]
    assert lfr(["runs", "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "tags best" in shown and "train_loss" in shown and "probe_test_accuracy" in shown


def test_runs_cli_rejects_a_malformed_config_filter(capsys):
    assert lfr(["runs", "--config", "no-equals-sign"]) == 1
    assert capsys.readouterr().err.startswith("error: --config takes KEY=VALUE")


def test_copy_cli_needs_a_target_and_reports_conflicts_with_a_nonzero_exit(smoke_store, tmp_path, capsys, monkeypatch):
    assert lfr(["runs", "copy"]) == 1
    assert "say where to copy" in capsys.readouterr().err
    other = tmp_path / "other"
    assert lfr(["runs", "copy", "--to", str(other)]) == 0
    assert "10 copied, 0 already there" in capsys.readouterr().out
    assert lfr(["runs", "copy", "--to", str(other)]) == 0
    assert "0 copied, 10 already there" in capsys.readouterr().out
    entry = json.loads((other / "2" / "run.json").read_text())
    (other / "2" / "run.json").write_text(json.dumps({**entry, "start_time": "2001-01-01T00:00:00"}))
    assert lfr(["runs", "copy", "--to", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: runs 2: the target holds other runs with these ids") and "--renumber" in err

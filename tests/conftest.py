"""Shared fixtures: every test runs against its own runs/, checkpoints/ and data/ folders."""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import skip_or_fail

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the run store, checkpoints and data dir at a fresh temporary folder."""
    for name in ("runs", "checkpoints", "data", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("LFR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LFR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LFR_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("LFR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LFR_MONGO_URL", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file store holding every smoke-scale run the VICReg report needs (VICReg, both
    ablations, eigenmaps, downstream tasks), built once and shared by tests that read it."""
    from helpers import build_session_store

    from lfr_report.report.vicreg import REPORT

    return build_session_store(tmp_path_factory.mktemp("smoke") / "runs", REPORT.gather)


@pytest.fixture
def smoke_store(smoke_runs: Path, isolated: Path):
    """A private copy of the smoke runs in this test's runs/ folder, so a test may add runs."""
    import shutil

    from lfr_report.tracking.store import FileRunStore

    root = isolated / "runs"
    shutil.rmtree(root)
    shutil.copytree(smoke_runs, root)
    return FileRunStore(root)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    """A live MongoDB URL without a database: ``LFR_TEST_MONGO_URL``'s real server, or a
    SecantusDB (MongoDB-wire-compatible, from PyPI) started here for the session."""
    from lfr_report.tracking.local_stack import free_port, start_local_mongo, stop

    given = os.environ.get("LFR_TEST_MONGO_URL")
    if given:
        yield given
        return
    try:
        process = start_local_mongo(free_port(), tmp_path_factory.mktemp("secantus"))
    except Exception as exc:  # not installed, or it would not start: say why in the skip line
        skip_or_fail(f"no live MongoDB-compatible server: {exc}")
    port = process.args[process.args.index("--port") + 1]
    yield f"mongodb://127.0.0.1:{port}"
    stop(process)


@pytest.fixture
def mongo_url(server):
    """A fresh database on the live server, dropped afterwards."""
    from lfr_report.tracking.store import connect_mongo

    parts = urlsplit(server)
    url = urlunsplit(parts._replace(path=f"/lfr_test_{uuid.uuid4().hex[:8]}"))
    yield url
    client, db = connect_mongo(url)
    client.drop_database(db.name)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny networks train to the same numbers on every machine,
    and on a busy one the CPU is spared a second thread's spin-waits."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

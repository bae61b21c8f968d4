"""Omniboard, seen working: our runs copied into a local MongoDB-compatible server, Omniboard
2.16.1 started on it, and its run list loaded in headless Chromium, which must show every
run with its experiment name and the headline metric's value. Run with `make test-stack`
(it installs Chromium and Omniboard); the screenshot lands in reports/omniboard-runs.png.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import skip_or_fail

from lfr_report.errors import LfrError
from lfr_report.tracking.local_stack import (
    ensure_metric_columns,
    free_port,
    install_omniboard,
    start_local_mongo,
    start_omniboard,
    stop,
)
from lfr_report.tracking.store import FileRunStore, MongoRunStore
from lfr_report.tracking.transfer import copy_runs

pytestmark = pytest.mark.omniboard
REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--virtual-time-budget=20000")  # fmt: skip


def chromium(url: str, profile: Path, *args: str) -> str:
    """Load ``url`` in headless Chromium (a fresh profile) with extra ``args``; its stdout."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_omniboard_lists_our_runs_with_their_metrics(smoke_runs, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        skip_or_fail("Chromium is not installed (make test-stack installs Debian's chromium)")
    try:
        install_omniboard(REPO / ".omniboard")
    except LfrError as exc:  # no npm: a missing tool (any other error is lfr's to fix, not a reason to skip)
        skip_or_fail(f"Omniboard could not be installed: {exc}")
    mongo = board = None
    try:
        mongo = start_local_mongo(free_port(), tmp_path / "db", log=tmp_path / "secantus.log")
        url = f"mongodb://127.0.0.1:{mongo.args[mongo.args.index('--port') + 1]}/lfr"
        store = MongoRunStore.from_url(url)
        files = FileRunStore(smoke_runs)
        assert len(copy_runs(files, store).copied) == 10
        assert "probe_test_accuracy" in ensure_metric_columns(store.db)
        port = free_port()
        board = start_omniboard(url, port, REPO / ".omniboard", log=tmp_path / "omniboard.log")
        page = f"http://127.0.0.1:{port}/sacred"

        shot = REPO / "reports" / "omniboard-runs.png"
        shot.parent.mkdir(exist_ok=True)
        chromium(
            page, tmp_path / "profile-shot", "--window-size=3000,1000", f"--screenshot={shot}"
        )  # metric columns too
        assert shot.stat().st_size > 10_000
        dom = chromium(page, tmp_path / "profile-dom", "--window-size=3000,900", "--dump-dom")
    finally:
        stop(board, mongo)

    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)).replace("&nbsp;", " ")
    assert "Probe Test Accuracy" in text and "Anomaly Auc" in text  # the metric columns
    assert f"{len(files.runs())} experiments" in text
    for run in files.runs():
        assert re.search(rf"► {run.id}\s+{run.experiment} ", text), f"run {run.id} not listed"
    vicreg = files.latest("vicreg", {"mu": 25.0, "views": "augment"})
    probe = files.metrics(vicreg.id)["probe_test_accuracy"].values[-1]
    row = re.search(rf"► {vicreg.id}\s+vicreg .*?(?=►|$)", text).group(0)
    assert repr(probe) in row  # the metric's value, in the run's own row

"""The tracking stack without Docker: a local MongoDB-compatible server and Omniboard.

    make omniboard-local        # = python -m lfr_report.tracking.local_stack

starts SecantusDB (a MongoDB-wire-compatible server from PyPI, beta) on 127.0.0.1 with its
data under ``.omniboard/db``, copies the file store's runs into it (idempotent: only new
runs are copied), starts Omniboard 2.16.1 (npm, installed into ``.omniboard/`` on first
use) against it and prints the URL, until Ctrl-C. For lasting use, the compose stack
(``make stack-up``) runs real MongoDB. The live tests start the same two processes with
the functions below.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lfr_report.errors import LfrError, StoreError

OMNIBOARD_VERSION = "2.16.1"
HOME = Path(".omniboard")
# Metrics Omniboard's run list shows as columns (their last value), as its "+/- Metric Columns" would add them.
HEADLINE_METRICS = ("probe_test_accuracy", "pixels_probe_test_accuracy", "anomaly_auc", "silhouette",
                    "retrieval_nearest_same_class")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secantusd() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    if not Path(found).exists():
        raise LfrError("secantusd-py is not installed: pip install secantusdb==0.7.0b3 (make setup does)")
    return found


def start_local_mongo(port: int, storage: Path, auth: bool = False, log: Path | None = None) -> subprocess.Popen:
    """SecantusDB listening on 127.0.0.1:``port`` with its data in ``storage``; returns once it answers."""
    command = [_secantusd(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
               "--log-level", "WARNING"] + (["--auth"] if auth else [])  # fmt: skip
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    _wait(lambda: _mongo_answers(port), process, f"SecantusDB on port {port}")
    return process


def _mongo_answers(port: int) -> bool:
    import pymongo

    try:
        pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=300).admin.command("ping")
        return True
    except Exception:
        return False


def omniboard_bin(home: Path = HOME) -> Path:
    return home / "node_modules" / ".bin" / "omniboard"


def install_omniboard(home: Path = HOME) -> Path:
    """``npm install omniboard@2.16.1`` into ``home`` unless it is there; returns the executable."""
    binary = omniboard_bin(home)
    if binary.exists():
        return binary
    if shutil.which("npm") is None:
        raise LfrError("npm is not installed: install Node.js 20 and npm, then rerun")
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(home),
                    f"omniboard@{OMNIBOARD_VERSION}"], check=True)  # fmt: skip
    return binary


def start_omniboard(mongo_url: str, port: int, home: Path = HOME, log: Path | None = None) -> subprocess.Popen:
    """Omniboard serving ``mongo_url``'s runs on 127.0.0.1:``port``; returns once its page loads."""
    binary = omniboard_bin(home)
    if not binary.exists():
        raise LfrError(f"Omniboard is not installed in {home}: run make omniboard-local (or make test-stack) once")
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen([str(binary), "--mu", mongo_url], env={**os.environ, "PORT": str(port)},
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/"), process, f"Omniboard on port {port}", timeout=60)
    return process


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(ready, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StoreError(f"{what} exited with code {process.returncode} before it answered")
        if ready():
            return
        time.sleep(0.2)
    process.terminate()
    raise StoreError(f"{what} did not answer within {timeout:.0f} s")


def ensure_metric_columns(db, metrics: tuple[str, ...] = HEADLINE_METRICS) -> list[str]:
    """Add a column per metric (last value) to Omniboard's run list in ``db``, unless one of
    that name exists (Omniboard keeps them in the ``omniboard.metric.columns`` collection)."""
    columns = db["omniboard.metric.columns"]
    added = []
    for name in metrics:
        if columns.count_documents({"name": name}) == 0:
            columns.insert_one({"name": name, "metric_name": name, "extrema": "last", "lastn": 1})
            added.append(name)
    return added


def stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: list[str] | None = None) -> int:
    from lfr_report.tracking.store import FileRunStore, MongoRunStore, runs_dir
    from lfr_report.tracking.transfer import copy_runs

    parser = argparse.ArgumentParser(
        prog="python -m lfr_report.tracking.local_stack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--mongo-port", type=int, default=27018, help="SecantusDB's port (default: %(default)s)")
    parser.add_argument("--port", type=int, default=9000, help="Omniboard's port (default: %(default)s)")
    parser.add_argument("--db", default="lfr", help="database name (default: %(default)s)")
    parser.add_argument("--no-copy", action="store_true", help="do not copy the file store's runs in")
    args = parser.parse_args(argv)
    mongo = board = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the two servers too, as Ctrl-C does
    try:
        install_omniboard()
        (HOME / "db").mkdir(parents=True, exist_ok=True)
        mongo = start_local_mongo(args.mongo_port, HOME / "db", log=HOME / "secantus.log")
        url = f"mongodb://127.0.0.1:{args.mongo_port}/{args.db}"
        store = MongoRunStore.from_url(url)
        if not args.no_copy:
            result = copy_runs(FileRunStore(runs_dir()), store, renumber=True)
            print(f"{len(result.copied)} runs copied from {runs_dir()}, {len(result.already_there)} already there")
        ensure_metric_columns(store.db)
        board = start_omniboard(url, args.port, log=HOME / "omniboard.log")
        print(f"Omniboard: http://127.0.0.1:{args.port}/sacred  (runs in {url}; Ctrl-C stops both)")
        print(f"record new runs there: export LFR_MONGO_URL={url}")
        board.wait()
    except LfrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stop(board, mongo)
    return 0


if __name__ == "__main__":
    sys.exit(main())

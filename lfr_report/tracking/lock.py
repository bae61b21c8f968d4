"""One process at a time per configuration: an exclusive lock file beside its checkpoint.

Two runs of one configuration would otherwise resume from, and overwrite, the same
checkpoint: the second starting from the first's live epoch, both saving over each
other. The first run to ask takes an ``fcntl.flock`` on ``<checkpoint stem>.lock`` and
writes its pid into it; a second process that asks while it is held is refused at once
with one line naming that pid (waiting would only run the same experiment twice: once
the first finishes, its COMPLETED run is what a rerun or a report reuses).

The lock belongs to the process (a kernel lock on an open file, gone when the process
dies, even by SIGKILL, so a crashed run never leaves a stale lock), and is held until
``release`` (a run that finished) or the process exits. A process that asks again for a
lock it holds gets it again: a report that runs several experiments in one process, or a
test that reruns a failed run in-process, is not refused by itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from lfr_report.errors import Busy
from lfr_report.tracking.store import checkpoints_dir

_held: dict[Path, int] = {}  # lock file -> its open descriptor, in this process


def holder(path: Path) -> str:
    """Who holds the lock file ``path``, as far as it says: ``pid N`` (else ``another process``)."""
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "another process"


def digest(value: object) -> str:
    """A short stable digest of a JSON-able value (a config, a set of data fingerprints)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def config_digest(config: dict) -> str:
    """The digest naming one configuration; the device is left out (a run may resume on another)."""
    return digest({k: v for k, v in config.items() if k != "device"})


def for_config(experiment: str, config: dict) -> Path:
    """The lock file of ``experiment`` run with ``config``: ``<experiment>-<config digest>.lock``
    in ``$LFR_CHECKPOINT_DIR`` (default ``checkpoints/``), beside its checkpoints. Every run
    takes it when it begins (``tracking.context.begin_run``), with or without checkpoints."""
    return checkpoints_dir() / f"{experiment}-{config_digest(config)}.lock"


def acquire(path: Path, wait: bool = False) -> None:
    """Hold the lock file ``path`` for this process; if another holds it, ``Busy`` (one
    line), or with ``wait`` block until it is free."""
    path = path.absolute()
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"{holder(path)} is running this configuration now (lock {path}); wait for it to finish "
                       "and run the same command again: it then reuses that run") from None  # fmt: skip
        # The holder before us may have removed the file between our open and our lock:
        # then we hold a lock on a file nobody else can see. Start again on the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[path] = fd


def release(path: Path) -> None:
    """Give up the lock file ``path`` if this process holds it, removing the file."""
    fd = _held.pop(path.absolute(), None)
    if fd is None:
        return
    path.absolute().unlink(missing_ok=True)  # before unlocking, so no one locks a file that is going away
    os.close(fd)

"""The run store: one read interface over Sacred's file store and its MongoDB store.

Report code reads runs only through ``RunStore``: find runs by experiment, status and
config values, read a run's metrics, read its artifacts. ``FileRunStore`` reads what
Sacred's ``FileStorageObserver`` writes (``<root>/<id>/run.json``, ``config.json``,
``info.json``, ``metrics.json`` and the artifact files beside them);
``MongoRunStore`` reads what ``MongoObserver`` writes (the ``runs`` and ``metrics``
collections and GridFS). ``open_store()`` picks one the way the experiments pick
their observer: MongoDB when ``LFR_MONGO_URL`` is set, else ``$LFR_RUNS_DIR`` (default
``runs``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lfr_report.errors import StoreError

READ_ATTEMPTS = 20  # a run file half-written by another process: read again for up to 2 s
MONGO_TIMEOUT_MS = 3000  # how long to wait for a MongoDB server before saying it cannot be reached (with
# the 4 s an experiment takes to import torch, a wrong LFR_MONGO_URL fails in about 7 s)


STALE_AFTER_S = 300  # Sacred beats every 10 s; five silent minutes is a dead process, not a slow epoch


def _utc(text: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (Sacred writes naive UTC times)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    """What the store knows about one run."""

    id: str
    experiment: str
    status: str  # QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED, TIMEOUT
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    start_time: str | None = None  # ISO 8601, UTC
    stop_time: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    repositories: tuple[dict[str, Any], ...] = ()  # Sacred's git records: url, commit, dirty
    artifacts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # Omniboard's tags (kept in the run entry's "omniboard" field)
    heartbeat: str | None = None  # ISO 8601, UTC: Sacred's last sign of life from a running run

    @property
    def probably_dead(self) -> bool:
        """RUNNING, but silent for over ``STALE_AFTER_S``: its process was killed (SIGKILL, a
        power cut) before it could record how it ended. Omniboard calls such runs "probably dead"."""
        if self.status != "RUNNING":
            return False
        last = _utc(self.heartbeat or self.start_time)
        return last is None or (datetime.now(UTC) - last).total_seconds() > STALE_AFTER_S

    @property
    def shown_status(self) -> str:
        """The status to show a user: ``probably dead`` for a stale RUNNING run."""
        return "probably dead" if self.probably_dead else self.status

    @property
    def commit(self) -> str | None:
        """The git commit the run's code came from (with ``+dirty`` if it had local changes)."""
        commit = self.info.get("git_commit")
        if commit:
            return commit
        for repo in self.repositories:
            if repo.get("commit"):
                return repo["commit"] + ("+dirty" if repo.get("dirty") else "")
        return None


@dataclass(frozen=True)
class Metric:
    """One logged scalar series."""

    name: str
    steps: list[int]
    values: list[float]

    @property
    def last(self) -> float:
        """The value logged last (a run's final result for a metric logged once)."""
        return self.values[-1]

    def mean_std(self) -> tuple[float, float]:
        """Mean and (population) standard deviation of the values: over seeds, for a metric
        logged once per seed (step = the seed's index)."""
        n = len(self.values)
        mean = sum(self.values) / n
        return mean, (sum((v - mean) ** 2 for v in self.values) / n) ** 0.5


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"name": "x"}}`` -> ``{"data.name": "x"}``; values are JSON-normalised (tuples become lists)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, path + "."))
        else:
            flat[path] = json.loads(json.dumps(value))
    return flat


def config_matches(
    config: Mapping[str, Any], wanted: Mapping[str, Any], added: Mapping[str, Any] | None = None
) -> bool:
    """True when every (dotted) key of ``wanted`` has the same value in ``config``. A key that
    ``config`` lacks matches when ``added`` (keys added to the experiment after the run was
    recorded: ``checks.added_later``) gives it the wanted value."""
    have = {**flatten_config(added or {}), **flatten_config(config)}
    return all(key in have and have[key] == value for key, value in flatten_config(wanted).items())


def with_added(config: Mapping[str, Any], added: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each (dotted) key of ``added`` that it lacks set to its value: a run
    recorded before those keys existed, as the config it ran with (``checks.added_later``)."""
    full = json.loads(json.dumps(config))
    for key, value in added.items():
        *parents, last = key.split(".")
        level = full
        for part in parents:
            level = level.setdefault(part, {})
        level.setdefault(last, value)
    return full


class RunStore(ABC):
    """Read access to recorded runs; see the module docstring."""

    location: str  # where the runs are, for messages and reports

    @abstractmethod
    def runs(self, experiment: str | None = None) -> list[Run]:
        """All runs, of one experiment if given."""

    @abstractmethod
    def metrics(self, run_id: str) -> dict[str, Metric]:
        """Every metric a run logged, by name."""

    @abstractmethod
    def artifact(self, run_id: str, name: str) -> bytes:
        """The content of one artifact of a run."""

    def get(self, run_id: str) -> Run:
        for run in self.runs():
            if run.id == str(run_id):
                return run
        raise StoreError(f"no run with id {run_id!r} in {self.location}")

    def find(
        self,
        experiment: str | None = None,
        status: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: tuple[str, ...] | list[str] = (),
        added: Mapping[str, Any] | None = None,
    ) -> list[Run]:
        """Runs that match, newest first. ``config`` matches by (dotted) key, see ``config_matches``
        (and ``added`` there); a run matches ``tags`` when it has all of them. ``lfr runs`` and the
        reports both query here."""
        found = [
            run
            for run in self.runs(experiment)
            if (status is None or run.status == status)
            and (config is None or config_matches(run.config, config, added))
            and set(tags) <= set(run.tags)
        ]
        return sorted(found, key=lambda run: (run.start_time or "", _numeric(run.id)), reverse=True)

    def latest(self, experiment: str, config: Mapping[str, Any] | None = None) -> Run | None:
        """The newest COMPLETED run of ``experiment`` whose config matches, or None."""
        found = self.find(experiment, "COMPLETED", config)
        return found[0] if found else None


def _tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple((entry.get("omniboard") or {}).get("tags") or ())


def _numeric(run_id: str) -> int:
    return int(run_id) if run_id.isdigit() else -1


def run_key(run_id: str | int) -> int | str:
    """A run id as Sacred writes it in configs and Mongo documents: an int when numeric.

    The command line turns ``encoder_run=3`` into the int 3, so a report that asks
    for that run must ask with the same type for the config to match.
    """
    return int(run_id) if str(run_id).isdigit() else str(run_id)


def _stamp(path: Path) -> tuple[int, int]:
    """What changes when a file is written: its modification time (ns) and size."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


class FileRunStore(RunStore):
    """Runs written by Sacred's ``FileStorageObserver`` under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._damaged: dict[Path, tuple[int, int]] = {}  # files found damaged: their (mtime, size) then
        self._warned: set[Path] = set()  # damaged runs already named on stderr

    def _read_json(self, path: Path, default: Any) -> Any:
        """A JSON file of a run; one that does not parse is read again for a moment before it is an error:
        Sacred rewrites run.json in place (truncate, then write), and runs recorded side by side (the
        local and Slurm executors) read each other's files while they are written. A file found
        damaged is not waited for again until it changes."""
        for attempt in range(READ_ATTEMPTS):
            try:
                if path in self._damaged and self._damaged[path] == _stamp(path):
                    raise StoreError(f"cannot read {path}: it was damaged and has not changed since")
                return json.loads(path.read_text())
            except FileNotFoundError:
                return default
            except ValueError as exc:
                if attempt == READ_ATTEMPTS - 1:
                    self._damaged[path] = _stamp(path)
                    raise StoreError(f"cannot read {path}: {exc}") from exc
                time.sleep(0.1)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc}") from exc

    def runs(self, experiment: str | None = None) -> list[Run]:
        if not self.root.is_dir():
            return []
        found = []
        for directory in sorted(self.root.iterdir(), key=lambda p: _numeric(p.name)):
            run_json = directory / "run.json"
            if not directory.name.isdigit() or not run_json.is_file():
                continue
            try:
                entry = self._read_json(run_json, {})
                if experiment is not None and entry.get("experiment", {}).get("name") != experiment:
                    continue
                config, info = (
                    self._read_json(directory / "config.json", {}),
                    self._read_json(directory / "info.json", {}),
                )
            except StoreError as exc:  # one damaged record: named once, the others still listed
                if directory not in self._warned:
                    self._warned.add(directory)
                    print(f"warning: run {directory.name} is damaged and left out ({exc}); a report will not reuse "
                          f"it: move {directory} away or delete it", file=sys.stderr)  # fmt: skip
                continue
            found.append(
                Run(
                    id=directory.name,
                    experiment=entry.get("experiment", {}).get("name", ""),
                    status=entry.get("status", "UNKNOWN"),
                    config=config,
                    info=info,
                    result=entry.get("result"),
                    start_time=entry.get("start_time"),
                    stop_time=entry.get("stop_time"),
                    host=entry.get("host", {}),
                    repositories=tuple(entry.get("experiment", {}).get("repositories", [])),
                    artifacts=tuple(entry.get("artifacts", [])),
                    tags=_tags(entry),
                    heartbeat=entry.get("heartbeat"),
                )
            )
        return found

    def metrics(self, run_id: str) -> dict[str, Metric]:
        raw = self._read_json(self.root / str(run_id) / "metrics.json", {})
        return {name: Metric(name, m["steps"], m["values"]) for name, m in raw.items()}

    def artifact(self, run_id: str, name: str) -> bytes:
        path = self.root / str(run_id) / name
        if not path.is_file():
            raise StoreError(f"run {run_id} in {self.location} has no artifact {name!r}")
        return path.read_bytes()


class MongoRunStore(RunStore):
    """Runs written by Sacred's ``MongoObserver`` into database ``db`` (a pymongo or mongomock Database)."""

    def __init__(self, db: Any, location: str | None = None) -> None:
        import gridfs

        self.db = db
        self.fs = gridfs.GridFS(db)
        self.location = location or f"MongoDB database {db.name!r}"

    @classmethod
    def from_url(cls, url: str, db_name: str | None = None) -> MongoRunStore:
        """Connect to ``url``; a server that does not answer within 3 s is a one-line ``StoreError``."""
        _client, db = connect_mongo(url, db_name)
        return cls(db, f"MongoDB {redact_url(url)} database {db.name!r}")

    def _run(self, doc: Mapping[str, Any]) -> Run:
        experiment = doc.get("experiment", {})
        return Run(
            id=str(doc["_id"]),
            experiment=experiment.get("name", ""),
            status=doc.get("status", "UNKNOWN"),
            config=doc.get("config", {}),
            # MongoObserver keeps links to the metrics documents in info.metrics: not the run's own info.
            info={k: v for k, v in (doc.get("info") or {}).items() if k != "metrics"},
            result=doc.get("result"),
            start_time=_iso(doc.get("start_time")),
            stop_time=_iso(doc.get("stop_time")),
            host=doc.get("host", {}),
            repositories=tuple(experiment.get("repositories", [])),
            artifacts=tuple(a["name"] for a in doc.get("artifacts", [])),
            tags=_tags(doc),
            heartbeat=_iso(doc.get("heartbeat")),
        )

    def runs(self, experiment: str | None = None) -> list[Run]:
        query = {} if experiment is None else {"experiment.name": experiment}
        return [self._run(doc) for doc in self.db.runs.find(query)]

    def _doc(self, run_id: str) -> Mapping[str, Any]:
        doc = self.db.runs.find_one({"_id": run_key(run_id)})
        if doc is None:
            raise StoreError(f"no run with id {run_id!r} in {self.location}")
        return doc

    def get(self, run_id: str) -> Run:
        return self._run(self._doc(run_id))

    def metrics(self, run_id: str) -> dict[str, Metric]:
        key = run_key(run_id)
        return {
            m["name"]: Metric(m["name"], list(m["steps"]), list(m["values"]))
            for m in self.db.metrics.find({"run_id": key})
        }

    def artifact(self, run_id: str, name: str) -> bytes:
        for entry in self._doc(run_id).get("artifacts", []):
            if entry["name"] == name:
                return self.fs.get(entry["file_id"]).read()
        raise StoreError(f"run {run_id} in {self.location} has no artifact {name!r}")


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def connect_mongo(url: str, db_name: str | None = None) -> tuple[Any, Any]:
    """A pymongo client and database for ``url``, checked with a ping.

    The database is ``db_name``, else the one named in the URL's path, else
    ``$LFR_MONGO_DB``, else ``lfr``.
    """
    import pymongo
    from pymongo.errors import OperationFailure, PyMongoError

    try:
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS)
        client.admin.command("ping")
    except OperationFailure as exc:
        if exc.code == 18 or "auth" in str(exc).lower():  # 18: AuthenticationFailed
            raise StoreError(
                f"MongoDB at {redact_url(url)} rejected the user name or password; fix them in LFR_MONGO_URL "
                "(the stack's are in .env; add ?authSource=admin for its root user)"
            ) from None
        raise StoreError(f"MongoDB at {redact_url(url)} refused the connection check: {exc}") from None
    except (PyMongoError, ValueError) as exc:
        raise StoreError(
            f"cannot reach MongoDB at {redact_url(url)} ({exc.__class__.__name__}); start it with `make stack-up`, "
            "or unset LFR_MONGO_URL to use the file store under runs/"
        ) from None
    db = client[db_name] if db_name else client.get_default_database(default=os.environ.get("LFR_MONGO_DB", "lfr"))
    return client, db


def runs_dir() -> Path:
    """Where the file store lives: ``$LFR_RUNS_DIR``, default ``runs``."""
    return Path(os.environ.get("LFR_RUNS_DIR", "runs"))


def checkpoints_dir() -> Path:
    """Where runs keep their checkpoints and configuration locks: ``$LFR_CHECKPOINT_DIR``, default ``checkpoints``."""
    return Path(os.environ.get("LFR_CHECKPOINT_DIR", "checkpoints"))


def check_can_record() -> None:
    """Before a run: the folders it will write (the file store unless ``LFR_MONGO_URL`` is set,
    and the checkpoints) exist or can be made, and this process can write in them; else one
    line naming the folder, the user and the fix (a volume or bind mount owned by another user,
    say), before anything is recorded."""
    folders = [("LFR_CHECKPOINT_DIR", checkpoints_dir())]
    if not os.environ.get("LFR_MONGO_URL"):
        folders.insert(0, ("LFR_RUNS_DIR", runs_dir()))
    for variable, folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise StoreError(f"cannot write in {folder.absolute()} ({variable}) as uid {os.getuid()}: "
                             f"{exc.strerror}; make it writable (chown {os.getuid()} {folder.absolute()}) or set "
                             f"{variable} to a folder you can write") from None  # fmt: skip


def store_at(location: str | Path) -> RunStore:
    """A store by location: a ``mongodb://`` (or ``mongodb+srv://``) URL, else a file-store directory."""
    text = str(location)
    if text.startswith(("mongodb://", "mongodb+srv://")):
        return MongoRunStore.from_url(text)
    return FileRunStore(text)


def open_store() -> RunStore:
    """The store the experiments write to: MongoDB if ``LFR_MONGO_URL`` is set, else the file store."""
    url = os.environ.get("LFR_MONGO_URL")
    return MongoRunStore.from_url(url) if url else FileRunStore(runs_dir())

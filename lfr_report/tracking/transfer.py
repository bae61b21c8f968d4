"""Copy runs between Sacred's file store and its MongoDB store, both ways.

    lfr runs copy --to mongodb://localhost:27017/lfr      # runs/ -> MongoDB (then Omniboard shows them)
    lfr runs copy --from mongodb://... --to runs/         # and back

A run is copied whole, in the layout the target's own observer writes, so Sacred,
Omniboard and ``RunStore`` read a copied run exactly like one recorded there:

* file store (``FileStorageObserver``): ``<root>/<id>/run.json`` (the run entry, times as
  ISO strings), ``config.json``, ``info.json``, ``metrics.json`` (per name: steps, values,
  timestamps), ``cout.txt``, the artifact files, and sources under ``<root>/_sources``;
* MongoDB (``MongoObserver``): a ``runs`` document (times as BSON dates, ``artifacts`` and
  ``experiment.sources`` pointing into GridFS, ``info.metrics`` linking the ``metrics``
  documents, which Omniboard follows), one ``metrics`` document per name, GridFS files.

Ids are kept. Copying is idempotent: a run already in the target (same experiment and
start time) is skipped. A target run with the same id that is a *different* run is a
conflict: reported, not overwritten, unless ``renumber`` gives the copy the next free id.
A run appears in the target only when complete: the file store's directory is renamed
into place, the MongoDB ``runs`` document is inserted after its metrics and files. BSON
dates keep milliseconds, so times copied into MongoDB lose their last three digits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfr_report.errors import StoreError
from lfr_report.tracking.store import FileRunStore, MongoRunStore, Run, RunStore, run_key

_TIME_FIELDS = ("start_time", "stop_time", "heartbeat")


@dataclass
class RunRecord:
    """Everything one run holds, independent of where it is stored (times as ISO strings)."""

    id: str
    entry: dict[str, Any]  # the run entry as run.json holds it, without config, info and output
    config: dict[str, Any]
    info: dict[str, Any]
    captured_out: str
    metrics: dict[str, dict[str, list]]  # name -> steps, values, timestamps
    artifacts: dict[str, bytes]
    sources: dict[str, bytes]  # source file name as the experiment recorded it -> content


@dataclass
class CopyResult:
    copied: list[tuple[str, str]] = field(default_factory=list)  # (source id, target id)
    already_there: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # ids held by a different run in the target


# ---------------------------------------------------------------- reading a whole run


def export_run(store: RunStore, run_id: str) -> RunRecord:
    """The whole of one run, read from a file or MongoDB store."""
    if isinstance(store, FileRunStore):
        return _export_file(store, str(run_id))
    if isinstance(store, MongoRunStore):
        return _export_mongo(store, str(run_id))
    raise StoreError(f"cannot copy runs out of {store.location}")


def _export_file(store: FileRunStore, run_id: str) -> RunRecord:
    directory = store.root / run_id
    entry = store._read_json(directory / "run.json", None)
    if entry is None:
        raise StoreError(f"no run with id {run_id!r} in {store.location}")
    sources = {}
    for name, stored in entry.get("experiment", {}).get("sources", []):
        path = store.root / stored
        if path.is_file():
            sources[name] = path.read_bytes()
    cout = directory / "cout.txt"
    return RunRecord(
        id=run_id,
        entry=entry,
        config=store._read_json(directory / "config.json", {}),
        info=store._read_json(directory / "info.json", {}),
        captured_out=cout.read_text(errors="replace") if cout.is_file() else "",
        metrics=store._read_json(directory / "metrics.json", {}),
        artifacts={name: store.artifact(run_id, name) for name in entry.get("artifacts", [])},
        sources=sources,
    )


def _export_mongo(store: MongoRunStore, run_id: str) -> RunRecord:
    doc = dict(store._doc(run_id))
    entry = {k: _iso(v) if k in _TIME_FIELDS else v for k, v in doc.items()
             if k not in ("_id", "config", "info", "captured_out")}  # fmt: skip
    entry["artifacts"] = [a["name"] for a in doc.get("artifacts", [])]
    experiment = dict(entry.get("experiment", {}))
    sources = {name: store.fs.get(file_id).read() for name, file_id in experiment.get("sources", [])}
    experiment["sources"] = [[name, None] for name in sources]  # where is the target's business
    entry["experiment"] = experiment
    metrics = {
        m["name"]: {"steps": list(m["steps"]), "values": list(m["values"]),
                    "timestamps": [_iso(t) for t in m.get("timestamps", [])]}
        for m in store.db.metrics.find({"run_id": doc["_id"]})
    }  # fmt: skip
    return RunRecord(
        id=str(doc["_id"]),
        entry=entry,
        config=doc.get("config", {}),
        info=store._run(doc).info,  # as the store reads it: without the links to the metrics documents
        captured_out=doc.get("captured_out") or "",
        metrics=metrics,
        artifacts={a["name"]: store.fs.get(a["file_id"]).read() for a in doc.get("artifacts", [])},
        sources=sources,
    )


# ---------------------------------------------------------------- writing a whole run


def import_run(store: RunStore, record: RunRecord, run_id: str) -> None:
    """Write ``record`` into ``store`` under ``run_id`` (which must be free)."""
    if isinstance(store, FileRunStore):
        _import_file(store, record, run_id)
    elif isinstance(store, MongoRunStore):
        _import_mongo(store, record, run_id)
    else:
        raise StoreError(f"cannot copy runs into {store.location}")


def _import_file(store: FileRunStore, record: RunRecord, run_id: str) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    entry = json.loads(json.dumps(record.entry, default=str))
    sources = []
    for name, content in record.sources.items():
        stem, ext = os.path.splitext(os.path.basename(name))
        stored = Path("_sources") / f"{stem}_{hashlib.md5(content).hexdigest()}{ext}"  # the observer's naming
        if not (store.root / stored).is_file():
            (store.root / "_sources").mkdir(exist_ok=True)
            (store.root / stored).write_bytes(content)
        sources.append([name, str(stored)])
    entry.setdefault("experiment", {})["sources"] = sources
    staging = Path(tempfile.mkdtemp(prefix=f".copy-{run_id}-", dir=store.root))
    try:
        for name, content in {"run.json": entry, "config.json": record.config, "info.json": record.info,
                              "metrics.json": record.metrics}.items():  # fmt: skip
            (staging / name).write_text(json.dumps(content, indent=2, sort_keys=True, default=str))
        (staging / "cout.txt").write_text(record.captured_out)
        for name, content in record.artifacts.items():
            (staging / name).write_bytes(content)
        os.rename(staging, store.root / run_id)  # fails, leaving the target as it was, if the id was taken meanwhile
    except OSError as exc:
        raise StoreError(f"cannot write run {run_id} into {store.location}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_mongo(store: MongoRunStore, record: RunRecord, run_id: str) -> None:
    key = run_key(run_id)
    runs_name = store.db.runs.name
    artifacts = [
        {"name": name, "file_id": store.fs.put(content, filename=f"artifact://{runs_name}/{run_id}/{name}")}
        for name, content in record.artifacts.items()
    ]
    sources = [
        [name, store.fs.put(content, filename=name, md5hash=hashlib.md5(content).hexdigest())]
        for name, content in record.sources.items()
    ]
    links = []
    for name, metric in record.metrics.items():
        inserted = store.db.metrics.insert_one({
            "run_id": key, "name": name, "steps": metric.get("steps", []), "values": metric.get("values", []),
            "timestamps": [_datetime(t) for t in metric.get("timestamps", [])],
        })  # fmt: skip
        links.append({"name": name, "id": str(inserted.inserted_id)})
    doc = {k: _datetime(v) if k in _TIME_FIELDS else v for k, v in record.entry.items()}
    doc.update(_id=key, config=record.config, info={**record.info, "metrics": links},
               captured_out=record.captured_out, artifacts=artifacts)  # fmt: skip
    doc["experiment"] = {**doc.get("experiment", {}), "sources": sources}
    store.db.runs.insert_one(doc)  # last: the run appears only once its metrics and files are in


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------- copying


def signature(run: Run) -> tuple[str, str]:
    """What identifies a run across stores: its experiment and its start time to the millisecond."""
    start = _datetime(run.start_time)
    when = start.isoformat(timespec="milliseconds") if isinstance(start, dt.datetime) else str(start)
    return run.experiment, when


def copy_runs(
    source: RunStore,
    target: RunStore,
    run_ids: list[str] | None = None,
    experiment: str | None = None,
    status: str | None = None,
    renumber: bool = False,
) -> CopyResult:
    """Copy runs (all but RUNNING ones unless ``run_ids`` or ``status`` say otherwise); see the module docstring."""
    if run_ids:
        chosen = [source.get(run_id) for run_id in run_ids]
    else:
        chosen = [run for run in source.find(experiment, status) if status or run.status != "RUNNING"]
    existing = target.runs()
    present = {signature(run) for run in existing}
    taken = {run.id for run in existing}
    result = CopyResult()
    for run in sorted(chosen, key=lambda r: (len(r.id), r.id)):
        if signature(run) in present:
            result.already_there.append(run.id)
            continue
        record = export_run(source, run.id)
        target_id = run.id
        if target_id in taken:
            if not renumber:
                result.conflicts.append(run.id)
                continue
            target_id = str(max((int(i) for i in taken if i.isdigit()), default=0) + 1)
        import_run(target, record, target_id)
        taken.add(target_id)
        present.add(signature(run))
        result.copied.append((run.id, target_id))
    return result

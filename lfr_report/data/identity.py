"""Which files a data set was read from: a fingerprint of their contents.

A data set's name says nothing about its files: ``cifar10`` under one ``LFR_DATA_DIR`` and
``cifar10`` under another are different data. So every read of a data set yields a
fingerprint (a SHA-256 over the names and contents of the files in the folder it was read
from, 16 hex digits), the run records it (``data_fingerprints`` in its info), the
checkpoint key includes it (a checkpoint made on other files is not resumed) and the
report runner compares it before reusing a stored run.

Hashing CIFAR-10's 180 MB takes about a second, so each file's hash is cached by its path,
size, modification time, inode number and inode change time in
``$LFR_CACHE_DIR/file-hashes.json`` (default ``~/.cache/lfr``): a second read costs a
``stat`` per file. The change time is the one a user cannot set back: a file rewritten with
its size and modification time restored (``cp -p``, ``rsync -t``, an archive re-extracted
with its stored times, ``touch -d``) gets a new change time, so it is hashed again. Data generated in memory
(``synthetic``, scikit-learn's ``digits``) has no files; its fingerprint is the hash of
the generator's name in its source description, the same for every split.

The data sets a run reads are noted here between ``begin_reads`` (called by
``begin_run``) and the run's end, so that the record and the checkpoint key say every data
set the run used, whichever experiment it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

_CHUNK = 1 << 20
_run_reads: dict[str, str] = {}  # data set name -> fingerprint, read since begin_reads
_frozen: dict[str, str] | None = None  # run_reads as the run's first checkpoint key took them
_known: dict[tuple[str, str], str] = {}  # (name, data dir) -> fingerprint, for this process


def cache_file() -> Path:
    """Where file hashes are cached: ``$LFR_CACHE_DIR/file-hashes.json``, default ``~/.cache/lfr``."""
    root = os.environ.get("LFR_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lfr"
    return Path(root) / "file-hashes.json"


def _load_cache(path: Path) -> dict[str, list]:
    try:
        cache = json.loads(path.read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):  # missing or damaged: it is only a cache
        return {}


def _save_cache(path: Path, cache: dict[str, list]) -> None:
    """Write the cache through a temporary file of this writer's own and a rename; a cache
    that cannot be written (a read-only home) only costs the hashing next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as file:
            json.dump(cache, file)
        os.replace(tmp, path)
    except OSError:
        pass


def file_hash(path: Path, cache: dict[str, list]) -> str:
    """SHA-256 of ``path``'s content, from ``cache`` when its size, modification time, inode
    and inode change time are unchanged (and then stored there; see the module docstring)."""
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]
    key = str(path.resolve())
    entry = cache.get(key)
    if isinstance(entry, list) and entry[:-1] == stamp:
        return entry[-1]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    cache[key] = [*stamp, digest.hexdigest()]
    return digest.hexdigest()


def directory_fingerprint(directory: Path) -> str:
    """The fingerprint of the regular, non-hidden files directly in ``directory``."""
    path = cache_file()
    cache = _load_cache(path)
    before = dict(cache)
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.name}\0{file_hash(file, cache)}\n".encode())
    if cache != before:
        _save_cache(path, cache)
    return digest.hexdigest()[:16]


def source_fingerprint(source: str) -> str:
    """The fingerprint of a data set read from ``source`` (``ImageDataset.source``: a folder,
    possibly followed by `` (details)``; otherwise a description of generated data)."""
    where = source.split(" (", 1)[0]  # the details (which split, which seed) are not the data set's identity
    if Path(where).is_dir():
        return directory_fingerprint(Path(where))
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def note_read(name: str, data_dir: Path, fingerprint: str) -> None:
    """Remember that data set ``name`` under ``data_dir`` has ``fingerprint`` (and that the current run read it)."""
    _known[(name, str(Path(data_dir).resolve()))] = fingerprint
    _run_reads[name] = fingerprint


def known_fingerprint(name: str, data_dir: Path) -> str | None:
    """``name``'s fingerprint if this process has read it from ``data_dir``."""
    return _known.get((name, str(Path(data_dir).resolve())))


def begin_reads() -> None:
    """A run starts: forget the data sets earlier runs of this process read."""
    global _frozen
    _run_reads.clear()
    _frozen = None


def run_reads() -> dict[str, str]:
    """The data sets read since ``begin_reads``, name -> fingerprint."""
    return dict(_run_reads)


def checkpoint_reads() -> dict[str, str]:
    """``run_reads`` as they were at the run's first call: the data part of its checkpoint
    key, the same for every checkpoint of one run even if it reads more data later."""
    global _frozen
    if _frozen is None:
        _frozen = run_reads()
    return dict(_frozen)

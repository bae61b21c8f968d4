"""Assertions shared by several test modules."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from pypdf import PdfReader

from lfr_report.tracking.store import RunStore
from lfr_report.tracking.transfer import signature


def assert_same_runs(a: RunStore, b: RunStore) -> None:
    """Every run of ``a`` is in ``b`` under the same id, with the same record, metrics and artifacts."""
    assert sorted(r.id for r in a.runs()) == sorted(r.id for r in b.runs())
    for run in a.runs():
        copy = b.get(run.id)
        assert (copy.experiment, copy.status, copy.config, copy.result) == (
            run.experiment,
            run.status,
            run.config,
            run.result,
        )
        assert copy.info == run.info and copy.commit == run.commit and signature(copy) == signature(run)
        assert copy.artifacts == run.artifacts
        for name in run.artifacts:
            assert b.artifact(run.id, name) == a.artifact(run.id, name)
        assert b.metrics(run.id) == a.metrics(run.id)


def pdf_text(path) -> tuple[int, str]:
    """Page count and the text, whitespace collapsed (extraction breaks lines anywhere)."""
    reader = PdfReader(str(path))
    return len(reader.pages), " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def report_numbers(path) -> list[str]:
    """Every decimal number and percentage in a PDF's text, in order: what must not change
    when the same runs are read from another store (dates, paths and page numbers aside)."""
    return re.findall(r"\d+\.\d+%?", pdf_text(path)[1])


def build_session_store(root: Path, gather: Callable) -> Path:
    """Run ``gather(FileRunStore(root), "smoke")`` with the file store at ``root`` (checkpoints
    beside it, MongoDB off), restoring the environment afterwards: for session fixtures,
    which cannot use monkeypatch."""
    from lfr_report.tracking.store import FileRunStore

    keys = ("LFR_RUNS_DIR", "LFR_CHECKPOINT_DIR", "LFR_MONGO_URL")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(LFR_RUNS_DIR=str(root), LFR_CHECKPOINT_DIR=str(root.parent / "checkpoints"))
    os.environ.pop("LFR_MONGO_URL", None)
    try:
        gather(FileRunStore(root), "smoke")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return root

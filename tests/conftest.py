"""Shared fixtures: every test runs against its own runs/, checkpoints/ and data/ folders."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the run store, checkpoints and data dir at a fresh temporary folder."""
    for name in ("runs", "checkpoints", "data"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("LFR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LFR_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("LFR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LFR_MONGO_URL", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file store holding one COMPLETED `vicreg with smoke` run, shared by the tests that only read it."""
    from sacred.observers import FileStorageObserver

    from lfr_report.report.runner import load_experiment

    root = tmp_path_factory.mktemp("smoke") / "runs"
    saved = {k: os.environ.get(k) for k in ("LFR_CHECKPOINT_DIR", "LFR_MONGO_URL")}
    os.environ["LFR_CHECKPOINT_DIR"] = str(root.parent / "checkpoints")
    os.environ.pop("LFR_MONGO_URL", None)
    ex = load_experiment("vicreg")
    observer = FileStorageObserver(str(root))
    ex.observers.append(observer)
    try:
        ex.run(named_configs=["smoke"], options={"--loglevel": "WARNING"})
    finally:
        ex.observers.remove(observer)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return root

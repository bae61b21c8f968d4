"""Writing artifacts to a Sacred run and reading them back from the run store.

Artifacts are written to a temporary file and handed to ``run.add_artifact``, which
copies them into the observer's store (a file next to the run, or GridFS).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sacred.run import Run as SacredRun

from lfr_report.tracking.observers import interrupts_deferred
from lfr_report.tracking.store import RunStore


def add_npz_artifact(run: SacredRun, name: str, **arrays: np.ndarray | torch.Tensor) -> None:
    """Store named arrays as one compressed ``.npz`` artifact."""
    as_numpy = {
        key: value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value) for key, value in arrays.items()
    }
    _add(run, name, lambda path: np.savez_compressed(path, **as_numpy))


def add_torch_artifact(run: SacredRun, name: str, obj: Any) -> None:
    """Store an object (a state dict with its metadata) with ``torch.save``."""
    _add(run, name, lambda path: torch.save(obj, path))


def _add(run: SacredRun, name: str, write: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        with path.open("wb") as f, interrupts_deferred():  # a Ctrl-C mid-write would fail the run
            write(f)
        run.add_artifact(str(path), name)


def read_npz(store: RunStore, run_id: str, name: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` artifact."""
    with np.load(io.BytesIO(store.artifact(run_id, name))) as data:
        return {key: data[key] for key in data.files}


def read_torch(store: RunStore, run_id: str, name: str) -> Any:
    """An object saved with ``add_torch_artifact`` (loaded on the CPU)."""
    return torch.load(io.BytesIO(store.artifact(run_id, name)), map_location="cpu", weights_only=False)


def read_encoder(store: RunStore, run_id: str) -> tuple[torch.nn.Module, dict]:
    """The encoder a run saved as ``encoder.pt`` (on the CPU, eval mode) and its architecture."""
    from lfr_report.models import build_encoder

    saved = read_torch(store, run_id, "encoder.pt")
    encoder = build_encoder(**saved["arch"])
    encoder.load_state_dict(saved["state_dict"])
    return encoder.eval(), saved["arch"]

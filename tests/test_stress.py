"""Stress: kills at random moments of a small VICReg run, each followed by a rerun, and
identical runs started together. Every run must end COMPLETED with the metrics of an
uninterrupted run, or INTERRUPTED / FAILED (a SIGKILLed one stays RUNNING: nothing could
record its end; ``lfr runs`` shows it as probably dead), never a mix: no COMPLETED run with
other numbers.

The default tests kill once during training (after a checkpoint: SIGKILL, then SIGTERM) and
check the rerun resumes to an uninterrupted run's metrics; ``-m slow`` runs twenty kills at
random moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_until

REPO = Path(__file__).resolve().parents[1]
ARGS = ("with", "smoke", "epochs=4", "data.train_size=256", "data.test_size=128", "tsne_points=50", "probe.epochs=2")


def _start(root: Path) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LFR_RUNS_DIR": str(root / "runs"),
           "LFR_CHECKPOINT_DIR": str(root / "checkpoints"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "vicreg.py"), *ARGS], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _runs(root: Path) -> dict[str, tuple[str, dict]]:
    """Run id -> (status, metrics as name -> (steps, values))."""
    found = {}
    for run_json in (root / "runs").glob("*/run.json"):
        metrics_file = run_json.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        found[run_json.parent.name] = (json.loads(run_json.read_text())["status"],
                                       {k: (m["steps"], m["values"]) for k, m in metrics.items()})  # fmt: skip
    return found


def _reference(root: Path) -> tuple[dict, float]:
    began = time.monotonic()
    proc = _start(root)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    (status, metrics), = _runs(root).values()  # fmt: skip
    assert status == "COMPLETED"
    return metrics, time.monotonic() - began


def _kill_rerun_and_race(tmp_path: Path, kills: int, seed: int) -> None:
    reference, took = _reference(tmp_path / "reference")
    root = tmp_path / "killed"
    rng = random.Random(seed)
    sigkilled = 0
    for _ in range(kills):
        proc = _start(root)
        time.sleep(rng.uniform(0, took))
        how = rng.choice([signal.SIGTERM, signal.SIGKILL])
        proc.send_signal(how)
        _, err = proc.communicate(timeout=600)
        sigkilled += how == signal.SIGKILL and proc.returncode == -signal.SIGKILL
        if proc.returncode not in (0, -signal.SIGKILL):  # 0: it had finished before the signal
            assert "Traceback" not in err, err
    together = [_start(root) for _ in range(2)]
    for proc in together:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 or "is running this configuration now" in err, err
    runs = _runs(root)
    statuses = [status for status, _ in runs.values()]
    assert set(statuses) <= {"COMPLETED", "INTERRUPTED", "FAILED", "RUNNING"}, statuses
    assert statuses.count("RUNNING") <= sigkilled, statuses
    assert "COMPLETED" in statuses  # of the two started together, at least one ran to its end
    for run_id, (status, metrics) in runs.items():
        if status == "COMPLETED":
            assert metrics == reference, f"run {run_id} COMPLETED with other metrics than an uninterrupted run"
    assert not list((root / "checkpoints").glob("*.pt")) and not list((root / "checkpoints").glob("*.lock"))


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_during_training_resumes_to_the_uninterrupted_metrics_and_a_race_never_mixes(tmp_path, how):
    from lfr_report.tracking.store import FileRunStore

    reference, _ = _reference(tmp_path / "reference")
    root = tmp_path / "killed"
    proc = _start(root)
    wait_until(lambda: list((root / "checkpoints").glob("*.pt")), "a first checkpoint (an epoch ended)", proc)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == (-signal.SIGKILL if how == signal.SIGKILL else 130), err
    assert "Traceback" not in err, err
    killed = FileRunStore(root / "runs").get("1")
    assert killed.status == ("RUNNING" if how == signal.SIGKILL else "INTERRUPTED")  # a SIGKILL leaves no word
    rerun = _start(root)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    resumed = FileRunStore(root / "runs").get("2")
    assert resumed.status == "COMPLETED" and resumed.info["resumed_from_epoch"] >= 1  # from the killed run's epochs
    assert _runs(root)["2"][1] == reference  # the whole curve and every evaluation, as if never killed
    assert not list((root / "checkpoints").glob("*.pt"))
    together = [_start(root) for _ in range(2)]  # the same command twice at once: one waits or both complete
    for proc in together:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 or "is running this configuration now" in err, err
    assert all(metrics == reference for status, metrics in _runs(root).values() if status == "COMPLETED")


@pytest.mark.slow
def test_twenty_kills_at_random_moments_then_reruns_and_a_race_never_mix(tmp_path):
    _kill_rerun_and_race(tmp_path, kills=20, seed=20)

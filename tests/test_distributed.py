"""One run across processes: ``torchrun --standalone --nproc_per_node=2`` on the CPU (gloo).

Three torchrun launches: ``ddp_equivalence.py`` (one step of VICReg and of SimCLR under DDP
against one process with the whole batch; ``fit`` on both ranks; resuming), the real
``experiments/vicreg.py`` at smoke scale (one run recorded, COMPLETED), and
``ddp_failing.py`` (rank 1 raises: the run is FAILED with rank 1's message).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sacred.observers import FileStorageObserver

from lfr_report import distributed
from lfr_report.errors import ConfigError
from lfr_report.experiment import new_experiment
from lfr_report.ssl.train import train_loop
from lfr_report.tracking.store import FileRunStore

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*TORCHRUN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("ddp")
    done = torchrun("tests/ddp_equivalence.py", str(folder / "measured.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "measured.json").read_text()), folder


@pytest.mark.parametrize("objective", ["vicreg", "simclr"])
def test_one_ddp_step_equals_one_process_with_the_global_batch(measured, objective):
    result = measured[0][objective]
    assert measured[0]["world_size"] == 2
    assert result["loss_error"] < 1e-5 and result["terms_error"] < 1e-5  # the logged (global) terms
    assert result["gradient_error"] < 1e-5 * result["gradient_scale"]


def test_the_gradient_is_wrong_without_the_all_reduce(measured):
    """The negative control: the comparison above can fail."""
    result = measured[0]["vicreg_without_all_reduce"]
    assert result["loss_error"] < 1e-5  # the forward is the same ...
    assert result["gradient_error"] > 0.05 * result["gradient_scale"]  # ... the gradient is not


def test_ranks_keep_identical_parameters_and_resume_exactly(measured):
    fit = measured[0]["fit"]
    assert fit["parameter_spread"] == 0.0
    assert fit["resume_error"] == 0.0  # stopped after epoch 1, resumed: the same weights as uninterrupted
    assert fit["resumed"] == [1, 1]  # the second call did resume from epoch 1 and trained epoch 2 alone
    assert fit["train_loss_steps"] == list(range(6))  # 48 images / a global batch of 16, two epochs
    assert fit["test_logged"] == ["test_covariance", "test_invariance", "test_loss", "test_variance"]


def test_a_checkpoint_of_two_processes_refuses_one(measured):
    checkpoint = measured[1] / "whole.pt"
    assert torch.load(checkpoint, weights_only=False)["world_size"] == 2
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ConfigError, match=r"written by 2 processes, not 1: resume it with torchrun --nproc_per_node=2"):
        train_loop(lambda batch, index: {"loss": model(batch).sum()}, torch.zeros(4, 1), modules={"model": model},
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=2,
                   device=torch.device("cpu"), generator=torch.Generator(), checkpoint=checkpoint)  # fmt: skip


def test_vicreg_under_torchrun_records_one_completed_run(isolated):
    done = torchrun("experiments/vicreg.py", "with", "smoke", "data.train_size=256", "tsne_points=64")
    assert done.returncode == 0, done.stderr[-3000:]
    store = FileRunStore(isolated / "runs")
    (run,) = store.runs()
    assert run.status == "COMPLETED" and run.info["world_size"] == 2
    metrics = store.metrics(run.id)
    assert len(metrics["train_loss"].values) == 256 // 64 and "probe_test_accuracy" in metrics
    assert not list((isolated / "checkpoints").iterdir())  # rank 0 removed the finished run's checkpoint


def test_a_failing_rank_makes_the_run_failed_with_its_message(isolated):
    done = torchrun("tests/ddp_failing.py")
    assert done.returncode != 0
    (run,) = FileRunStore(isolated / "runs").runs()
    assert run.status == "FAILED"
    trace = "".join(json.loads((isolated / "runs" / run.id / "run.json").read_text())["fail_trace"])
    assert "rank 1 of 2 failed" in trace and "planted failure: rank 1 could not make its views" in trace


def test_scripts_that_do_not_train_across_processes_say_so_before_recording(monkeypatch, isolated):
    """In torchrun's environment an experiment made without ``distributed=True`` (the
    autoencoder, CLIP, ...) stops at its config, before a run is recorded."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ex = new_experiment("not_distributed", data=False)
    ex.main(lambda: None)
    ex.observers.append(FileStorageObserver(str(isolated / "runs")))
    with pytest.raises(ConfigError, match=r"^test_distributed.py is not distributed: run it with python, not torchrun"):
        ex.run()
    assert FileRunStore(isolated / "runs").runs() == []


def test_a_global_batch_must_divide_among_the_processes(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"^batch_size=63 \(the global batch\) does not divide among 2 processes"):
        distributed.check_launch("vicreg.py", True, 63)
    distributed.check_launch("vicreg.py", True, 64)


def test_a_diverging_run_under_torchrun_stops_every_rank_failed_in_one_line(isolated):
    """A learning rate that makes the loss non-finite: the logged terms are the ranks' means, so every
    rank sees the same NaN at the same step and stops; the one run is FAILED with the loop's line."""
    done = torchrun("experiments/vicreg.py", "with", "smoke", "data.train_size=256", "tsne_points=64", "lr=1e30")
    assert done.returncode != 0
    (run,) = FileRunStore(isolated / "runs").runs()
    assert run.status == "FAILED" and run.info["world_size"] == 2
    trace = "".join(json.loads((isolated / "runs" / run.id / "run.json").read_text())["fail_trace"])
    assert "Diverged: training diverged at epoch 1" in trace and "(a learning rate too high?)" in trace
    assert "Traceback" not in done.stderr.strip().splitlines()[-1]

"""The distillation experiment through Sacred and its report: what a run records, how a
diverging run and bad config end, and the PDF built from smoke-scale runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import build_session_store, pdf_text

from lfr_report.report import distillation
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import FileRunStore

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "experiments" / "distill.py")


@pytest.fixture(scope="session")
def distill_runs(tmp_path_factory) -> Path:
    """A file store with every smoke-scale run the distillation report needs."""
    return build_session_store(tmp_path_factory.mktemp("distill") / "runs", distillation.REPORT.gather)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=300)  # fmt: skip


def test_a_run_logs_both_protocols_per_epoch_and_saves_D(distill_runs):
    store = FileRunStore(distill_runs)
    run = store.latest("distill", {"solver": "value", "size": 100, "noise": 0.0, "diversity": 0.0})
    assert run is not None and run.config["scale"] == "smoke"
    metrics = store.metrics(run.id)
    epochs = run.config["epochs"]
    for name in ("outer_loss", "penalty", "rho", "course_test_accuracy", "recon_error", "recon_error_D",
                 "retrained_test_accuracy", "retrained_recon_error"):  # fmt: skip
        assert metrics[name].steps == list(range(1, epochs + 1)), name
    assert metrics["penalty"].values[-1] >= 0
    # protocol (b) of the final D: one refit per seed, their mean the run's result
    final = metrics["final_retrained_test_accuracy"]
    assert final.steps == list(range(run.config["eval_seeds"])) and run.config["eval_seeds"] >= 2
    assert run.result["retrained_test_accuracy"] == pytest.approx(sum(final.values) / len(final.values))
    saved = read_npz(store, run.id, "distilled.npz")
    assert saved["D"].shape == (100, 784) and saved["W"].shape == (784, run.config["hidden"])
    assert list(saved["snapshot_epochs"]) == [0, 1, 2] and saved["snapshots"].shape == (3, 100, 784)


def test_report_answers_what_the_assignment_asks_from_the_runs(distill_runs, isolated):
    import shutil

    root = isolated / "runs"
    shutil.rmtree(root)
    shutil.copytree(distill_runs, root)
    store = FileRunStore(root)
    out = distillation.REPORT.build(store, "smoke", isolated / "reports" / "distillation.pdf")
    pages, text = pdf_text(out)
    assert 2 <= pages <= 12
    for heading in ("What was done beyond the baseline code", "The three solvers", "Visualisations", "Sizes of D",
                    "Options: diversity, proper inner losses", "Problems and surprises"):  # fmt: skip
        assert heading in text
    runs = distillation.REPORT.gather(store, "smoke")
    for solver in ("penalty", "value", "implicit"):
        run = runs[solver]  # protocol (b): mean +- std over the refits of w
        mean, std = store.metrics(run.id)["final_retrained_test_accuracy"].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}%" in text, solver
    subsets = store.metrics(runs["baselines_100"].id)["random_subset_test_accuracy"]
    assert len(subsets.values) == runs["baselines_100"].config["eval_seeds"]  # one per random subset drawn
    mean, std = subsets.mean_std()
    assert f"{100 * mean:.2f} ± {100 * std:.2f}%" in text
    for key, flag in (("dsm", "noise"), ("exact_sm", "trace")):  # each loss's D against a subset refitted with it
        option, baseline = runs[key], runs[f"baselines_{key}"]
        assert option.config[flag] and baseline.config[flag] and baseline.config["solver"] == "baselines"
        mean, std = store.metrics(baseline.id)["random_subset_test_accuracy"].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}%" in text
    assert "notes/distillation/problems.md" in text  # where the user's own account goes
    assert len({run.id for run in runs.values()}) == len(store.find("distill", "COMPLETED"))  # no run wasted


def test_diverging_run_stops_with_epoch_and_term_and_is_failed(isolated):
    done = _cli("with", "smoke", "penalty", "lr=1e30", cwd=isolated)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert "distillation diverged at epoch 1:" in line, done.stderr[-1500:]
    statuses = [json.loads(p.read_text())["status"] for p in (isolated / "runs").glob("*/run.json")]
    assert statuses == ["FAILED"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["solver=newton"], "solver must be penalty, value, implicit or baselines, got 'newton'"),
     (["dsm", "exact_sm"], "trace (exact score matching) and noise > 0 (denoising) are two proper losses")],
)  # fmt: skip
def test_impossible_config_fails_before_a_run(isolated, args, message):
    done = _cli("with", "smoke", *args, cwd=isolated)
    assert done.returncode == 1
    assert message in done.stderr.strip().splitlines()[-1]
    assert list((isolated / "runs").glob("*/run.json")) == []

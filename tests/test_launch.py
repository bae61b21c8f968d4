"""A report's runs as a plan, and through submitit: the local executor and a real one-node Slurm.

The executor tests build ``launch_report`` (an encoder and two evaluations naming it, real
smoke-scale runs) inline, then with ``--executor local`` or ``--executor slurm``, and the
PDFs must carry the same numbers. The Slurm test records its runs over the wire into the
live MongoDB-protocol server of the Mongo tests.

Torch's CPU results depend on its thread count (a smoke VICReg run's probe accuracy was
0.199 with 2 threads and 0.258 with 1), which is why a run's ``threads`` is part of its
config: the inline build (one run after another in this process) and the builds with jobs
side by side compute with the same threads and must give the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import launch_report
import pytest
import slurm_cluster
import submitit
import torch
from helpers import report_numbers, skip_or_fail

from lfr_report import cli
from lfr_report.registry import REPORTS
from lfr_report.report.spec import Need
from lfr_report.running import launch as launch_module
from lfr_report.running.launch import Launch, RunFailed, SlurmSettings, launch, plan
from lfr_report.tracking.store import FileRunStore, MongoRunStore


def register_test_report(monkeypatch, root: Path) -> Path:
    """``launch_test`` known to the CLI, its template in a templates folder of its own."""
    templates = root / "templates"
    templates.mkdir()
    (templates / f"{launch_report.NAME}.html").write_text(launch_report.TEMPLATE)
    monkeypatch.setenv("LFR_TEMPLATES_DIR", str(templates))
    monkeypatch.setitem(REPORTS, launch_report.NAME, "launch_report")
    return root


@pytest.fixture
def test_report(isolated, monkeypatch) -> Path:
    return register_test_report(monkeypatch, isolated)


def use_file_store(monkeypatch, root: Path) -> FileRunStore:
    """Runs and checkpoints under ``root`` (so one store's runs never resume from another's checkpoints)."""
    monkeypatch.setenv("LFR_RUNS_DIR", str(root / "runs"))
    monkeypatch.setenv("LFR_CHECKPOINT_DIR", str(root / "checkpoints"))
    return FileRunStore(root / "runs")


class Inline(NamedTuple):
    numbers: list[str]  # the PDF's numbers
    store: FileRunStore


@pytest.fixture(scope="module")
def inline(tmp_path_factory) -> Inline:
    """The numbers of the test report built inline (this process, its torch threads as they are), once for the module."""
    root = tmp_path_factory.mktemp("inline")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_test_report(monkeypatch, root)
        store = use_file_store(monkeypatch, root)
        monkeypatch.setenv("LFR_DATA_DIR", str(root / "data"))
        monkeypatch.delenv("LFR_MONGO_URL", raising=False)
        try:
            numbers = report_numbers(build(root, "inline", "--executor", "inline"))
        finally:
            torch.set_num_threads(threads)
    assert len(numbers) >= 4
    assert {r.info["device"] for r in store.runs()} == {"cpu (1 thread)"}  # the config's threads, not the cores
    return Inline(numbers, store)


def build(tmp: Path, name: str, *options: str) -> Path:
    out = tmp / "reports" / f"{name}.pdf"
    argv = ["report", launch_report.NAME, "--scale", "smoke", "--out", str(out), "--jobs-dir", str(tmp / "jobs")]
    assert cli.main([*argv, *options]) == 0
    return out


def test_dry_run_prints_the_plan_in_waves_and_trains_nothing(isolated, capsys):
    assert cli.main(["report", "vicreg", "--scale", "default", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert "would run, wave 1 " in lines["vicreg"] and "experiments/vicreg.py with default" in lines["vicreg"]
    assert (
        "wave 2, after vicreg" in lines["no_neighbours"] and "neighbours_from=<from vicreg>" in lines["no_neighbours"]
    )
    assert "wave 3, after no_neighbours" in lines["no_neighbours_anomaly"]
    assert out.splitlines()[-1] == "0 of 10 runs exist; 10 would run in 3 wave(s)"
    assert not list((isolated / "runs").iterdir()) and not (isolated / "reports").exists()


def test_local_executor_gives_the_inline_report_and_a_rerun_runs_nothing(test_report, inline, monkeypatch,
                                                                         capsys):  # fmt: skip
    local_store = use_file_store(monkeypatch, test_report / "local")
    local = build(test_report, "local", "--parallel", "2")  # local is the default executor
    out = capsys.readouterr().out
    assert "3 run(s) to make, 2 at a time, through the local executor" in out
    for key, wave in (("encoder", 1), ("retrieval", 2), ("anomaly", 2)):
        assert f"started  launch_test/{key}  (wave {wave}, job " in out and f"done     launch_test/{key}  in " in out
    assert out.index("done     launch_test/encoder") < out.index("started  launch_test/retrieval")
    assert "made 3 run(s) in " in out and "  wave 2:   2 run(s), " in out  # the waves' summary
    assert report_numbers(local) == inline.numbers
    assert {r.info["device"] for r in local_store.runs()} == {"cpu (1 thread)"}
    assert sorted(r.status for r in local_store.runs()) == ["COMPLETED"] * 3
    logs = list((test_report / "jobs").rglob("*_log.out"))
    assert len(logs) == 3  # one submitit job per run

    assert sorted(p.run.id for p in plan(launch_report.REPORT, local_store, "smoke")) == ["1", "2", "3"]
    assert cli.main(["report", launch_report.NAME, "--scale", "smoke", "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert "exists: run 1" in dry[1] and dry[-1] == "3 of 3 runs exist; 0 would run in 0 wave(s)"
    build(test_report, "again")
    assert "to make" not in capsys.readouterr().out and len(local_store.runs()) == 3


def test_one_core_gives_the_numbers_of_two_and_runs_one_job_at_a_time(inline, tmp_path):
    """``taskset -c 0``: the same run makes the same numbers on one core, and the launcher's default is one job."""
    env = {**os.environ, "LFR_RUNS_DIR": str(tmp_path / "runs"), "LFR_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
           "PYTHONPATH": str(Path(cli.__file__).parents[1])}  # fmt: skip
    env.pop("LFR_MONGO_URL", None)
    one_core = ["taskset", "-c", "0", sys.executable]
    done = subprocess.run([*one_core, "-c", "from lfr_report.running.launch import default_parallel as d; print(d())"],
                          env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "1"
    subprocess.run([*one_core, str(Path(cli.__file__).parents[1] / "experiments" / "vicreg.py"), "with", "smoke"],
                   env=env, capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
    [alone] = FileRunStore(tmp_path / "runs").runs()
    [encoder] = [r for r in inline.store.runs() if r.experiment == "vicreg"]
    assert alone.config == encoder.config and alone.result == encoder.result
    losses = [FileRunStore(tmp_path / "runs").metrics(alone.id)["train_loss"].values,
              inline.store.metrics(encoder.id)["train_loss"].values]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) > 1


def test_a_failed_run_stops_the_report_naming_it_and_the_completed_ones_stay(test_report, monkeypatch, capsys):
    store = use_file_store(monkeypatch, test_report)
    broken = dataclasses.replace(launch_report.REPORT, needs=lambda scale: [
        Need("encoder", "vicreg", [scale]),
        Need("broken", "vicreg", [scale], {"data.name": "cifar10"}),  # no CIFAR-10 in the test's data folder
    ])  # fmt: skip
    with pytest.raises(RunFailed) as failed:
        launch(broken, store, "smoke", Launch("local", 1, test_report / "jobs"))
    message = str(failed.value)
    assert message.startswith("run broken failed: `experiments/vicreg.py with smoke data.name=cifar10`: ")
    assert "cifar10" in message.split("`: ")[1] and "\n" not in message
    log = Path(message.rsplit("log: ", 1)[1])
    assert log.is_file() and "cifar10" in log.read_text()
    assert {r.config["data"]["name"]: r.status for r in store.runs()} == {"synthetic": "COMPLETED", "cifar10": "FAILED"}
    # the same report continues from the stored encoder: its evaluations can start at once
    states = {p.need.key: (p.run is not None, p.wave) for p in plan(launch_report.REPORT, store, "smoke")}
    assert states == {"encoder": (True, None), "retrieval": (False, 1), "anomaly": (False, 1)}


def test_a_run_file_half_written_by_a_parallel_job_is_read_again(tmp_path, capsys, monkeypatch):
    """Jobs side by side read each other's run.json, which Sacred rewrites in place (truncate, write).
    The other job finishes its write while the store waits to read again: an event, not a timer."""
    from lfr_report.tracking import store as store_module

    run_json = tmp_path / "1" / "run.json"
    run_json.parent.mkdir()
    whole = json.dumps({"experiment": {"name": "vicreg"}, "status": "RUNNING"})
    run_json.write_text(whole[:10])
    waits = []

    def the_writer_finishes_meanwhile(seconds):
        waits.append(seconds)
        run_json.write_text(whole)

    with monkeypatch.context() as patched:
        patched.setattr(store_module, "time", SimpleNamespace(sleep=the_writer_finishes_meanwhile))
        assert [(r.id, r.status) for r in FileRunStore(tmp_path).runs()] == [("1", "RUNNING")]
    assert len(waits) == 1  # read, found half-written, waited, read again
    run_json.write_text(whole[:10])  # and one that stays broken is left out and named, not an endless wait
    capsys.readouterr()
    assert FileRunStore(tmp_path).runs() == []
    assert re.search(r"run 1 is damaged and left out \(cannot read .*run\.json", capsys.readouterr().err)


def test_slurm_settings_from_a_file_and_options(tmp_path):
    config = tmp_path / "slurm.toml"
    config.write_text('[slurm]\npartition = "gpu"\ntime_min = 30\nmem_gb = 16\nsetup = ["module load cuda"]\n'
                      'srun_args = ["--container-image=lfr.sqsh"]\nsignal_delay_s = 300\nmax_requeues = 5\n'
                      '[slurm.extra]\naccount = "lab"\n')  # fmt: skip
    settings = SlurmSettings.read(config, partition="debug", cpus_per_job=4, gpus_per_job=None)
    assert settings.max_requeues == 5  # the executor's max_num_timeout
    assert settings.parameters() == {"partition": "debug", "time": 30, "signal_delay_s": 300, "cpus_per_task": 4,
                                     "mem": "16G",
                                     "setup": ["module load cuda"], "srun_args": ["--container-image=lfr.sqsh"],
                                     "additional_parameters": {"account": "lab"}}  # fmt: skip
    # submitit accepts them all: it refuses unknown parameters, and checks them without Slurm
    submitit.SlurmExecutor(folder=tmp_path).update_parameters(**settings.parameters(), array_parallelism=2)
    config.write_text("[slurm]\nqueue = 'x'\n")
    with pytest.raises(Exception, match=r"unknown keys \['queue'\]"):
        SlurmSettings.read(config)


def test_the_command_lines_slurm_options_and_setup_lines_reach_the_job_script(tmp_path):
    config = tmp_path / "slurm.toml"
    config.write_text(
        '[slurm]\nsetup = ["module load cuda/12", "source /opt/lfr/env.sh"]\n[slurm.extra]\naccount = "lab"\n'
    )
    args = cli.parser().parse_args(["report", "vicreg", "--executor", "slurm", "--slurm-config", str(config),
                                    "--partition", "gpu", "--gpus-per-job", "1", "--cpus-per-job", "4",
                                    "--mem-gb", "12.5", "--time-min", "30", "--signal-delay-s", "90"])  # fmt: skip
    how = cli._launch_settings(args)
    executor = launch_module._executor(how, tmp_path / "%j", slot=0)
    script = executor._make_submission_file_text("python -u -m submitit.core._submit JOB", "uid")
    sbatch = {
        line.split("=", 1)[0]: line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")
    }
    assert sbatch["#SBATCH --partition"] == "gpu" and sbatch["#SBATCH --gpus-per-node"] == "1"
    assert sbatch["#SBATCH --cpus-per-task"] == "4" and sbatch["#SBATCH --mem"] == "12.5G"
    assert sbatch["#SBATCH --time"] == "30" and sbatch["#SBATCH --signal"] == "USR2@90"
    assert sbatch["#SBATCH --account"] == "lab"
    lines = script.splitlines()
    setup = [lines.index("module load cuda/12"), lines.index("source /opt/lfr/env.sh")]
    assert setup == sorted(setup) and setup[-1] < next(i for i, line in enumerate(lines) if "srun" in line)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            ["--executor", "inline", "--parallel", "2"],
            "--parallel runs jobs side by side: use it with --executor local or slurm",
        ),
        (["--executor", "local", "--parallel", "0"], "--parallel must be at least 1, got 0"),
        (["--executor", "slurm", "--slurm-config", "nowhere.toml"], "--slurm-config nowhere.toml: no such file"),
        (["--executor", "slurm", "--time-min", "0"], "slurm time_min must be an integer >= 1, got 0"),
        (["--executor", "slurm", "--max-requeues", "-1"], "slurm max_requeues must be an integer >= 0, got -1"),
        (
            ["--executor", "slurm", "--time-min", "2", "--signal-delay-s", "120"],
            "slurm signal_delay_s=120 must be over 60 s shorter than the time limit (2 min): Slurm may send its "
            "signal up to 60 s early, before a job has started; raise time_min or lower signal_delay_s",
        ),
        (
            ["--executor", "slurm", "--time-min", "1", "--signal-delay-s", "0"],
            "slurm signal_delay_s=0 must be over 60 s shorter than the time limit (1 min)",
        ),
    ],
)
def test_bad_launch_options_are_one_line_and_run_nothing(isolated, capsys, options, error):
    assert cli.main(["report", "vicreg", "--scale", "smoke", *options]) == 1
    assert capsys.readouterr().err.startswith(f"error: {error}")
    assert not list((isolated / "runs").iterdir())


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Path:
    """A real one-node Slurm (munged, slurmctld, slurmd as root) for this module; its slurm.conf."""
    reason = slurm_cluster.why_not()
    if reason:
        skip_or_fail(reason)
    with slurm_cluster.one_node_cluster(tmp_path_factory.mktemp("slurm")) as conf:
        yield conf


def test_slurm_executor_records_over_the_wire_and_gives_the_inline_report(test_report, inline, slurm,
                                                                          mongo_url, monkeypatch, capsys):  # fmt: skip
    monkeypatch.setenv("SLURM_CONF", str(slurm))
    monkeypatch.setenv("LFR_MONGO_URL", mongo_url)
    monkeypatch.setenv("LFR_CHECKPOINT_DIR", str(test_report / "slurm-checkpoints"))
    on_slurm = build(test_report, "slurm", "--executor", "slurm", "--parallel", "2", "--time-min", "10",
                     "--cpus-per-job", "2")  # fmt: skip
    out = capsys.readouterr().out
    assert "wave 1: 1 run(s) submitted to Slurm" in out and "wave 2: 2 run(s) submitted to Slurm" in out
    assert "done     launch_test/encoder  in " in out and ": run 1  (" in out
    assert report_numbers(on_slurm) == inline.numbers
    wire = MongoRunStore.from_url(mongo_url)
    assert sorted(r.status for r in wire.runs()) == ["COMPLETED"] * 3
    assert {r.info["device"] for r in wire.runs()} == {"cpu (1 thread)"}  # the config's threads, not the job's CPUs


def test_jobs_recording_into_another_store_stop_the_report_saying_so(test_report, monkeypatch):
    """A job whose settings name another store (here: its LFR_RUNS_DIR) completes its run there;
    the launcher, finding no completed run in its own store, stops with the line that says why."""
    store = use_file_store(monkeypatch, test_report)
    elsewhere = test_report / "elsewhere"
    theirs = launch_module.worker_environment
    monkeypatch.setattr(launch_module, "worker_environment", lambda: {**theirs(), "LFR_RUNS_DIR": str(elsewhere)})
    with pytest.raises(RunFailed) as failed:
        launch(launch_report.REPORT, store, "smoke", Launch("local", 1, test_report / "jobs"))
    assert str(failed.value) == (
        f"run encoder (`experiments/vicreg.py with smoke`) finished, but {store.location} holds no completed run of "
        "its config: do the jobs record into the same store (LFR_MONGO_URL, or LFR_RUNS_DIR on a shared path)?"
    )
    assert store.runs() == [] and [r.status for r in FileRunStore(elsewhere).runs()] == ["COMPLETED"]


def test_a_failing_slurm_job_stops_the_report_with_its_error_in_one_line(test_report, slurm, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm))
    store = use_file_store(monkeypatch, test_report)
    broken = dataclasses.replace(launch_report.REPORT, needs=lambda scale: [
        Need("broken", "vicreg", [scale], {"data.name": "cifar10"}),  # no CIFAR-10 in the test's data folder
    ])  # fmt: skip
    how = Launch("slurm", 1, test_report / "jobs", SlurmSettings(time_min=10, cpus_per_job=1))
    with pytest.raises(RunFailed) as failed:
        launch(broken, store, "smoke", how)
    message = str(failed.value)
    assert message.startswith("run broken failed: `experiments/vicreg.py with smoke data.name=cifar10`: DataError: ")
    assert "cifar10" in message.split("`: ")[1] and "\n" not in message
    log = Path(message.rsplit("log: ", 1)[1])
    assert log.is_file() and "cifar10" in log.read_text()  # the job's own log, on the shared path
    assert [r.status for r in store.runs()] == ["FAILED"]


def test_slurm_refusing_the_jobs_is_an_error_and_runs_nothing(test_report, slurm, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm))
    argv = ["report", launch_report.NAME, "--scale", "smoke", "--executor", "slurm", "--partition", "nosuch",
            "--jobs-dir", str(test_report / "jobs")]  # fmt: skip
    assert cli.main(argv) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after sbatch's own lines
    assert (
        last
        == "error: sbatch refused the jobs: sbatch: error: Batch job submission failed: Invalid partition name specified"
    )
    assert not list((test_report / "runs").iterdir())

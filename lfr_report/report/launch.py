"""A report's missing runs as a plan, and the plan run through submitit, on this machine or on Slurm.

``plan`` reads a report's declaration (``Report.needs(scale)``) against the run store:
each needed run is either found (the rule of ``find_or_run``: a COMPLETED run with an
equal config) or missing. A missing run whose config names a run that is itself missing
(an ``After`` value, such as ``encoder_run=run_id("vicreg")``) cannot have its exact
config yet: it waits "after" that run, one wave later. ``lfr report NAME --dry-run``
prints the plan and stops.

``launch`` runs the missing runs wave by wave through submitit, never a queue of ours:

* ``local``: subprocesses of this machine, at most ``--parallel K`` at a time, each with
  cores/K torch threads (two torch jobs with all threads each on 2 cores slow each other
  5-10x) and, where there are GPUs, a GPU of its own;
* ``slurm``: one job array per wave (``%K`` at a time, or the whole wave), with the partition, time limit,
  GPUs, CPUs and memory per job from the options or a TOML file (``SlurmSettings``).

Each job runs ``find_or_run`` in a fresh process, so it records into the same store as
the inline path: ``LFR_MONGO_URL`` (the normal case on a cluster) or the file store
under ``LFR_RUNS_DIR``, which must then be on a path the nodes share. After each wave
the plan is made again from the store, which gives the next wave its run ids. A failed
run stops the report with one line naming the run, its command and its log; the runs
that completed stay in the store, so the same command continues where it stopped.
"""

from __future__ import annotations

import os
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lfr_report.errors import ConfigError, LfrError
from lfr_report.report.runner import command, find, find_or_run
from lfr_report.report.spec import After, Need, Report, Runs
from lfr_report.tracking.store import Run, RunStore

EXECUTORS = ("inline", "local", "slurm")
POLL_S = 2.0  # how often the launcher looks at its jobs
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit kills a local job after 2 minutes unless told otherwise
# Settings a worker must see as the launcher does: paths made absolute (a job's working
# directory may differ), the rest passed as they are.
PATH_SETTINGS = {"LFR_RUNS_DIR": "runs", "LFR_CHECKPOINT_DIR": "checkpoints", "LFR_DATA_DIR": "data"}
PASSED_SETTINGS = ("LFR_MONGO_URL", "LFR_MONGO_DB", "LFR_GIT_COMMIT")


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One needed run: found (``run``), or missing and due in ``wave`` (1 = can start now)."""

    need: Need
    run: Run | None = None  # the stored run, when found
    wave: int | None = None  # missing: the wave it runs in
    waits_for: tuple[str, ...] = ()  # missing runs its config names (then its exact config is not known yet)
    named: tuple[str, ...] = ()  # resolved named configs and updates, when known
    updates: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The experiment command the run is (or will be), e.g. ``experiments/vicreg.py with smoke``."""
        if self.waits_for:  # values from runs that do not exist yet
            named = [_placeholder(v) for v in self.need.named]
            updates = {k: _placeholder(v) for k, v in self.need.updates.items()}
        else:
            named, updates = list(self.named), self.updates
        return command(self.need.experiment, named, updates)


def _placeholder(value: Any) -> Any:
    return f"<from {'+'.join(value.keys)}>" if isinstance(value, After) else value


def plan(report: Report, store: RunStore, scale: str) -> list[Planned]:
    """Every run ``report`` needs at ``scale``: found in ``store``, or missing with its wave."""
    needs = report.needs(scale)
    declared = [need.key for need in needs]
    found: Runs = {}
    waves: dict[str, int] = {}  # missing key -> wave
    planned = []
    for index, need in enumerate(needs):
        unknown = [key for key in need.after if key not in declared[:index]]
        if unknown:
            raise ValueError(f"run {need.key!r} of report {report.name!r} uses {unknown}, not declared before it")
        waits_for = tuple(key for key in need.after if key in waves)
        if waits_for:
            planned.append(Planned(need, wave=1 + max(waves[key] for key in waits_for), waits_for=waits_for))
            waves[need.key] = planned[-1].wave
            continue
        named, updates = need.resolved(store, found)
        run = find(store, need.experiment, named, updates)
        if run is not None:
            found[need.key] = run
            planned.append(Planned(need, run=run, named=tuple(named), updates=updates))
        else:
            planned.append(Planned(need, wave=1, named=tuple(named), updates=updates))
            waves[need.key] = 1
    return planned


def describe_plan(report: Report, scale: str, store: RunStore, planned: Sequence[Planned]) -> str:
    """The plan as ``--dry-run`` prints it: one line per run, then a summary."""
    width = max(len(p.need.key) for p in planned)
    lines = [f"plan of report {report.name} at scale {scale}, store {store.location}:"]
    for p in planned:
        if p.run is not None:
            state = f"exists: run {p.run.id}"
        else:
            state = f"would run, wave {p.wave}" + (f", after {', '.join(p.waits_for)}" if p.waits_for else "")
        lines.append(f"  {p.need.key:{width}s}  {state:40s}  {p.command}")
    missing = [p for p in planned if p.run is None]
    waves = max((p.wave or 0 for p in missing), default=0)
    lines.append(f"{len(planned) - len(missing)} of {len(planned)} runs exist; "
                 f"{len(missing)} would run in {waves} wave(s)")  # fmt: skip
    return "\n".join(lines)


# --- where the jobs run ------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmSettings:
    """What each Slurm job asks for; ``None`` leaves it to the cluster's defaults.

    Read from a TOML file's ``[slurm]`` table (the README shows one); options override it.
    ``python`` is the command that runs Python in a job, e.g. ``apptainer exec --nv lfr.sif
    python`` to run each job in the project's image (or ``srun_args`` for pyxis's
    ``--container-image``); ``extra`` holds any other ``sbatch`` options (``account``,
    ``qos``, ``constraint``), without their dashes.
    """

    partition: str | None = None
    time_min: int = 60
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    python: str | None = None
    setup: tuple[str, ...] = ()  # shell lines run before each job (``module load ...``)
    srun_args: tuple[str, ...] = ()  # options of the job's ``srun`` (pyxis: ``--container-image=...``)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path | None, **options: Any) -> SlurmSettings:
        """The file's ``[slurm]`` table (if a file is given), then every option that is not None."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                table = tomllib.loads(Path(path).read_text()).get("slurm", {})
            except FileNotFoundError:
                raise ConfigError(f"--slurm-config {path}: no such file (see the README's Slurm section)") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"--slurm-config {path}: not valid TOML ({exc})") from None
            known = {f.name for f in fields(cls)}
            wrong = sorted(set(table) - known)
            if wrong:
                raise ConfigError(f"--slurm-config {path}: unknown keys {wrong} in [slurm]; known: {sorted(known)}")
            values.update(table)
        values.update({k: v for k, v in options.items() if v is not None})
        for key in ("setup", "srun_args"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        """``SlurmExecutor.update_parameters`` arguments."""
        given = {"partition": self.partition, "time": self.time_min, "gpus_per_node": self.gpus_per_job,
                 "cpus_per_task": self.cpus_per_job, "mem": f"{self.mem_gb:g}G" if self.mem_gb else None,
                 "setup": list(self.setup) or None, "srun_args": list(self.srun_args) or None,
                 "additional_parameters": self.extra or None}  # fmt: skip
        return {key: value for key, value in given.items() if value is not None}


@dataclass(frozen=True)
class Launch:
    """How ``launch`` runs the missing runs."""

    executor: str = "local"  # local | slurm
    parallel: int | None = None  # jobs at a time (default: local 1, slurm a whole wave)
    jobs_dir: Path = Path("jobs")  # submitit's job folders and logs (on a shared path for slurm)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    def __post_init__(self) -> None:
        if self.executor not in ("local", "slurm"):
            raise ConfigError(f"unknown executor {self.executor!r}; executors: {', '.join(EXECUTORS)}")
        if self.parallel is not None and self.parallel < 1:
            raise ConfigError(f"--parallel must be at least 1, got {self.parallel}")


def worker_environment(threads: int | None) -> dict[str, str]:
    """The settings a job needs to record into the launcher's store and read its data."""
    env = {key: str(Path(os.environ.get(key, default)).resolve()) for key, default in PATH_SETTINGS.items()}
    env.update({key: os.environ[key] for key in PASSED_SETTINGS if os.environ.get(key)})
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_job(experiment: str, named: list[str], updates: dict[str, Any], env: dict[str, str]) -> str:
    """What each job runs (in a fresh process): ``find_or_run`` in the launcher's settings; the run's id."""
    import torch

    os.environ.update(env)
    threads = env.get("OMP_NUM_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if threads:
        torch.set_num_threads(int(threads))
    from lfr_report.tracking.observers import sigterm_as_interrupt
    from lfr_report.tracking.store import open_store

    with sigterm_as_interrupt():  # scancel sends SIGTERM: the run is recorded INTERRUPTED, not left RUNNING
        return find_or_run(open_store(), experiment, named, updates).id


# --- running the waves -------------------------------------------------------------------


class RunFailed(LfrError):
    """A run of the report failed in its job: the report stops, the completed runs stay."""


def launch(report: Report, store: RunStore, scale: str, how: Launch, say: Callable[[str], None] = print) -> Runs:
    """Run every missing run of ``report`` at ``scale`` through submitit, wave by wave; the runs by key."""
    planned = plan(report, store, scale)
    waves = max((p.wave or 0 for p in planned), default=0)
    for number in range(1, waves + 1):
        ready = [p for p in planned if p.run is None and not p.waits_for]
        if not ready:
            break
        say(f"wave {number}/{waves}: {len(ready)} run(s) through the {how.executor} executor")
        _run_wave(ready, how, say)
        planned = plan(report, store, scale)  # the next wave's configs name this wave's runs
        lost = [p for p in planned if p.run is None and p.need.key in {r.need.key for r in ready}]
        if lost:
            raise RunFailed(f"run {lost[0].need.key} (`{lost[0].command}`) finished, but {store.location} holds no "
                            "completed run of its config: do the jobs record into the same store (LFR_MONGO_URL, "
                            "or LFR_RUNS_DIR on a shared path)?")  # fmt: skip
    return {p.need.key: p.run for p in planned if p.run is not None}


def _executor(how: Launch, folder: Path, slot: int, array_parallelism: int = 1):
    """A submitit executor for one local job (its own threads and GPU) or for Slurm arrays."""
    import submitit

    if how.executor == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, python=how.slurm.python)
        executor.update_parameters(**how.slurm.parameters(), array_parallelism=array_parallelism)
        return executor
    import torch

    executor = submitit.LocalExecutor(folder=folder)
    gpus = torch.cuda.device_count()
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=1 if gpus else 0,
                               visible_gpus=(slot % gpus,) if gpus else ())  # fmt: skip
    return executor


def _run_wave(ready: Sequence[Planned], how: Launch, say: Callable[[str], None]) -> None:
    """Submit ``ready`` and wait, with a line per change of state; the first failure raises ``RunFailed``."""
    folder = how.jobs_dir.resolve() / "%j"
    if how.executor == "slurm":
        env = worker_environment(how.slurm.cpus_per_job)
        args = [(p.need.experiment, list(p.named), p.updates, env) for p in ready]
        try:
            executor = _executor(how, folder, 0, array_parallelism=how.parallel or len(ready))
            jobs = executor.map_array(run_job, *zip(*args, strict=True))
        except Exception as exc:  # sbatch refused: a wrong partition, time limit, account ...
            raise RunFailed(f"sbatch refused the jobs: {_last_line(str(exc))}") from None
        return _watch(dict(zip(jobs, ready, strict=True)), [], how, say, folder)
    parallel = how.parallel or 1
    return _watch({}, list(ready), how, say, folder, parallel, threads=max(1, (os.cpu_count() or 1) // parallel))


def _watch(running: dict, waiting: list[Planned], how: Launch, say: Callable[[str], None], folder: Path,
           parallel: int = 1, threads: int = 1) -> None:  # fmt: skip
    """Wait for the jobs, starting the waiting local ones as slots free up (``parallel`` at a time)."""
    slots: dict[Any, int] = {}
    shown: dict[Any, str] = {}
    for p in waiting:
        say(f"  {p.need.key}: queued  ({p.command})")
    try:
        while running or waiting:
            while waiting and len(running) < parallel:  # local: start the next job in a free slot
                p = waiting.pop(0)
                slot = min(set(range(parallel)) - set(slots.values()))
                job = _executor(how, folder, slot).submit(run_job, p.need.experiment, list(p.named), p.updates,
                                                          worker_environment(threads))  # fmt: skip
                running[job], slots[job], shown[job] = p, slot, "queued"  # said above
            for job, p in list(running.items()):
                state = _state(job)
                if state != shown.get(job):
                    shown[job] = state
                    say(_progress(p, job, state))
                if state == "failed":
                    _cancel(running)
                    raise RunFailed(f"run {p.need.key} failed: `{p.command}`: {_error(job)}; log: {job.paths.stderr}")
                if state.startswith("done"):
                    del running[job]
                    slots.pop(job, None)
            time.sleep(POLL_S if running else 0)
    except KeyboardInterrupt:
        _cancel(running)
        raise


def _state(job) -> str:
    """queued, running, done or failed. Running once the job's log exists (Slurm creates it when the job
    starts), which works without Slurm accounting; done or failed from submitit's result file."""
    if job.done():
        try:
            return f"done: run {job.result()}"
        except Exception:
            return "failed"
    return "running" if job.paths.stdout.exists() else "queued"


def _progress(p: Planned, job, state: str) -> str:
    where = f"job {job.job_id}"
    if state == "failed":
        where += f", log {job.paths.stderr}"
    return f"  {p.need.key}: {state}  ({where}{'; ' + p.command if state == 'queued' else ''})"


def _error(job) -> str:
    """A failed job's exception as one line (``DataError: ...``), from the traceback submitit kept."""
    exc = job.exception()
    if exc is None:
        return "no result (killed? see the log)"
    parts = re.split(r"\n-{10,}\n", str(exc))  # submitit: a header, ----, the traceback, ----, the log paths
    line = _last_line(parts[1] if len(parts) >= 3 else str(exc))
    name, sep, message = line.partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {message}" if sep and " " not in name else line


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _cancel(running: dict) -> None:
    """Cancel the jobs still running (completed runs stay in the store; the runs cancelled are INTERRUPTED)."""
    for job in running:
        if not job.done():
            job.cancel(check=False)

"""A report's missing runs as a plan, and the plan run through submitit, on this machine or on Slurm.

``plan`` reads a report's declaration (its ``needed(scale)`` runs) against the run store:
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
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import submitit
from sacred.utils import SacredInterrupt

from lfr_report.errors import ConfigError, LfrError
from lfr_report.running.needs import After, Declared, Need, Runs
from lfr_report.running.runner import command, find, find_or_run
from lfr_report.tracking.store import Run, RunStore

EXECUTORS = ("inline", "local", "slurm")
POLL_S = 2.0  # how often the launcher looks at its jobs
HEARTBEAT_S = 60.0  # how often it prints a line of the running ones
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


def plan(report: Declared, store: RunStore, scale: str, rehearse: bool = False) -> list[Planned]:
    """Every run ``report`` needs at ``scale`` (``rehearse``: sizes shrunk): found in ``store``, or missing
    with its wave."""
    needs = report.needed(scale, rehearse)
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


def describe_plan(report: Declared, scale: str, store: RunStore, planned: Sequence[Planned]) -> str:
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


# `man sbatch`, --signal: "Due to the resolution of event handling by Slurm, the signal may be sent up
# to 60 seconds earlier than specified." A job signalled before Python has installed its handler dies
# of the signal (FAILED, not requeued): seen with a 1 min limit and a 45 s delay.
SIGNAL_EARLY_S = 60


@dataclass(frozen=True)
class SlurmSettings:
    """What each Slurm job asks for; ``None`` leaves it to the cluster's defaults.

    Read from a TOML file's ``[slurm]`` table (the manual's scale-out page, docs/scale-out.md, shows one); options override it.
    ``python`` is the command that runs Python in a job, e.g. ``apptainer exec --nv lfr.sif
    python`` to run each job in the project's image (or ``srun_args`` for pyxis's
    ``--container-image``); ``extra`` holds any other ``sbatch`` options (``account``,
    ``qos``, ``constraint``), without their dashes.
    """

    partition: str | None = None
    time_min: int = 60
    signal_delay_s: int = 120  # Slurm's SIGUSR2 this long before the time limit: the run stops, the job is requeued
    max_requeues: int = 3  # requeues at the time limit before the job fails (preemptions are not counted)
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
                raise ConfigError(f"--slurm-config {path}: no such file (docs/scale-out.md shows one)") from None
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

    def __post_init__(self) -> None:
        for name, low in (("time_min", 1), ("signal_delay_s", 0), ("max_requeues", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"slurm {name} must be an integer >= {low}, got {value!r}")
        if 60 * self.time_min - self.signal_delay_s <= SIGNAL_EARLY_S:
            raise ConfigError(f"slurm signal_delay_s={self.signal_delay_s} must be over {SIGNAL_EARLY_S} s shorter "
                              f"than the time limit ({self.time_min} min): Slurm may send its signal up to "
                              f"{SIGNAL_EARLY_S} s early, before a job has started; raise time_min or lower "
                              "signal_delay_s")  # fmt: skip

    def parameters(self) -> dict[str, Any]:
        """``SlurmExecutor.update_parameters`` arguments."""
        given = {"partition": self.partition, "time": self.time_min, "signal_delay_s": self.signal_delay_s,
                 "gpus_per_node": self.gpus_per_job,
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


def worker_environment() -> dict[str, str]:
    """The settings a job needs to record into the launcher's store and read its data."""
    env = {key: str(Path(os.environ.get(key, default)).resolve()) for key, default in PATH_SETTINGS.items()}
    env.update({key: os.environ[key] for key in PASSED_SETTINGS if os.environ.get(key)})
    return env


class RunJob(submitit.helpers.Checkpointable):
    """What each job runs (in a fresh process): ``find_or_run`` in the launcher's settings; the run's id.
    The run computes with its config's ``threads`` (``tracking.context.begin_run``), whatever the job's CPUs.

    A job stopped on Slurm comes back and resumes:

    * ``scancel`` or ``scontrol requeue`` (preemption) send SIGTERM: the run stops as on Ctrl-C,
      is recorded INTERRUPTED and keeps its last checkpoint; a requeued job runs this again;
    * the signal Slurm sends ``signal_delay_s`` before the time limit (SIGUSR2, which submitit
      asks for) stops the run the same way, recorded TIMEOUT (or INTERRUPTED when it came
      early: preemption), and then submitit requeues the job (at most ``max_requeues`` times
      for time limits).

    The next try finds no completed run, so it runs the configuration again: its training
    loops resume from the checkpoint, and the new run names the stopped ones
    (``earlier_tries``, see ``find_or_run``)."""

    def __call__(self, experiment: str, named: list[str], updates: dict[str, Any], env: dict[str, str]) -> str:
        os.environ.update(env)
        from lfr_report.tracking.observers import capture_without_helpers, stop_on_signals
        from lfr_report.tracking.store import open_store

        capture_without_helpers()
        submitits = signal.getsignal(signal.SIGUSR2)
        with stop_on_signals(usr2=_slurm_stop(submitits)):
            try:
                return find_or_run(open_store(), experiment, named, updates).id
            except SlurmStop as exc:  # recorded TIMEOUT or INTERRUPTED; its checkpoint stays
                stopped = exc
        submitits(signal.SIGUSR2, None)  # pickles this call again, runs `scontrol requeue` and exits
        raise stopped  # only if it did not: the job ends failed, saying why


run_job = RunJob()


class SlurmStop(SacredInterrupt):
    """Slurm's warning signal (SIGUSR2) during a run: recorded TIMEOUT or INTERRUPTED, then requeued."""


def _slurm_stop(submitits: Any) -> Callable[[], SlurmStop] | None:
    """In a Slurm job (where submitit handles SIGUSR2), what SIGUSR2 raises during a run:
    ``SlurmStop`` with the status TIMEOUT when submitit judges the time limit near, else
    INTERRUPTED (preemption). Elsewhere None: SIGUSR2 is left as it is."""
    if not callable(submitits):
        return None

    def stop() -> SlurmStop:
        timed_out = getattr(getattr(submitits, "__self__", None), "has_timed_out", lambda: False)()
        error = SlurmStop(f"Slurm's signal: {'the time limit is near' if timed_out else 'preempted'}; requeued")
        error.STATUS = "TIMEOUT" if timed_out else "INTERRUPTED"  # what Sacred records
        return error

    return stop


# --- running the waves -------------------------------------------------------------------


class RunFailed(LfrError):
    """A run of the report failed in its job: the report stops, the completed runs stay."""


@dataclass
class _Job:
    """A run submitted for this build: what it is, its submitit job, when it started and ended."""

    label: str  # report/key, as the progress lines name it
    planned: Planned
    wave: int  # its depth in the declarations' dependencies (1: needs no run of this build)
    slot: int = 0  # local: which of the --parallel slots it runs in
    job: Any = None
    started: float | None = None
    ended: float | None = None
    state: str = "queued"
    node: str = ""  # Slurm: the node it was last seen running on
    gone_polls: int = 0  # Slurm: polls in a row squeue has not listed it
    restarts: int = 0  # Slurm: times it was requeued, as last seen

    @property
    def seconds(self) -> float:
        """How long it ran (0 until it has started and ended)."""
        return (self.ended or 0) - (self.started or 0)


def launch(reports: Declared | Sequence[Declared], store: RunStore, scale: str, how: Launch, rehearse: bool = False,
           say: Callable[[str], None] | None = None, on_complete: Callable[[Declared], None] | None = None) -> Runs:  # fmt: skip
    """Run every missing run of ``reports`` at ``scale`` through submitit; the runs of the last report by key.

    Local jobs start as soon as a slot is free and the runs they name exist (the
    declarations' dependencies, across all the reports at once); Slurm gets one job array per
    wave. A report whose runs all exist is handed to ``on_complete`` at once (its PDF need
    not wait for the other reports' runs). One line per run as it starts and ends, a line of
    the running ones every minute, and the waves' summary at the end."""
    say = say or _say
    reports = list(reports) if isinstance(reports, Sequence) else [reports]
    plans = {r.name: plan(r, store, scale, rehearse) for r in reports}
    waves = {(name, p.need.key): p.wave for name, planned in plans.items() for p in planned if p.run is None}
    jobs: dict[str, _Job] = {}  # by command: one job for a run two reports need
    total = len({p.command if not p.waits_for else (name, p.need.key)
                 for name, planned in plans.items() for p in planned if p.run is None})  # fmt: skip
    slots = how.parallel or default_parallel()
    if total:
        at_a_time = "a wave at a time" if how.executor == "slurm" and not how.parallel else f"{slots} at a time"
        say(f"{total} run(s) to make, {at_a_time}, through the {how.executor} executor (logs in {how.jobs_dir}/)")
    started_at, last_beat = time.monotonic(), time.monotonic()
    completed: set[str] = set()
    try:
        while True:
            for r in reports:  # reports whose runs all exist: their PDFs now
                if r.name not in completed and all(p.run is not None for p in plans[r.name]):
                    completed.add(r.name)
                    if on_complete is not None:
                        on_complete(r)
            running = [j for j in jobs.values() if j.state in ("queued", "running") and j.job is not None]
            ready = _ready(plans, jobs, waves)
            if not ready and not running:
                break
            if how.executor == "slurm":
                if not running:
                    _submit_array(ready, how, say, total, jobs)
            else:
                for job in ready[: max(0, slots - len(running))]:
                    job.slot = min(set(range(slots)) - {j.slot for j in running})  # its GPU, when there are GPUs
                    _submit_local(job, how, say, total, jobs)
                    running.append(job)
            on_slurm = _squeue(running) if how.executor == "slurm" and running else None
            finished = _poll(running, say, total, jobs, started_at, on_slurm)
            if finished:
                plans = {r.name: plan(r, store, scale, rehearse) for r in reports}  # they name the runs just made
                _check_recorded(finished, plans, store)
            elif time.monotonic() - last_beat >= HEARTBEAT_S:
                say(_heartbeat(jobs, started_at))
                last_beat = time.monotonic()
            else:
                time.sleep(POLL_S)
    except BaseException:
        _cancel([j.job for j in jobs.values() if j.job is not None and j.state in ("queued", "running")])
        raise
    if jobs:
        say(summary(list(jobs.values()), time.monotonic() - started_at))
    return {p.need.key: p.run for p in plans[reports[-1].name] if p.run is not None}


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe (`make report | tee build.log`)


def default_parallel() -> int:
    """Runs side by side by default: one per GPU on a GPU machine, else one per core this process may use
    (``taskset -c 0`` gives one); each run computes with its own ``threads`` (1 by default)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ready(plans: dict[str, list[Planned]], jobs: dict[str, _Job], waves: dict) -> list[_Job]:
    """The missing runs whose configs are known now and that no job makes yet, those that other runs
    wait for first (they open the next wave), then in the order declared."""
    ready: dict[str, _Job] = {}
    waited_for = {(name, key) for name, planned in plans.items() for p in planned for key in p.waits_for}
    for name, planned in plans.items():
        for p in planned:
            if p.run is None and not p.waits_for and p.command not in jobs and p.command not in ready:
                ready[p.command] = _Job(f"{name}/{p.need.key}", p, waves.get((name, p.need.key)) or 1)
    order = sorted(ready.values(), key=lambda j: (tuple(j.label.split("/", 1)) not in waited_for, j.wave))
    return order


def _submit_local(job: _Job, how: Launch, say: Callable[[str], None], total: int, jobs: dict[str, _Job]) -> None:
    p = job.planned
    executor = _executor(how, how.jobs_dir.resolve() / "%j", job.slot)
    with _children_ignore_ctrl_c():
        job.job = executor.submit(run_job, p.need.experiment, list(p.named), p.updates, worker_environment())
    job.started, job.state = time.monotonic(), "running"
    jobs[p.command] = job
    say(f"[{len(jobs):{len(str(total))}d}/{total}] started  {job.label}  (wave {job.wave}, job {job.job.job_id}: "
        f"{p.command})")  # fmt: skip


def _submit_array(ready: list[_Job], how: Launch, say: Callable[[str], None], total: int,
                  jobs: dict[str, _Job]) -> None:  # fmt: skip
    """One Slurm job array for the runs ready now (``--parallel`` of them at a time, or all)."""
    args = [(j.planned.need.experiment, list(j.planned.named), j.planned.updates, worker_environment()) for j in ready]
    try:
        executor = _executor(how, how.jobs_dir.resolve() / "%j", 0, array_parallelism=how.parallel or len(ready))
        submitted = executor.map_array(run_job, *zip(*args, strict=True))
    except Exception as exc:  # sbatch refused: a wrong partition, time limit, account ...
        raise RunFailed(f"sbatch refused the jobs: {_last_line(str(exc))}") from None
    say(f"wave {max(j.wave for j in ready)}: {len(ready)} run(s) submitted to Slurm")
    for job, handle in zip(ready, submitted, strict=True):
        job.job = handle
        jobs[job.planned.command] = job
        say(f"[{len(jobs):{len(str(total))}d}/{total}] queued   {job.label}  (job {handle.job_id}: "
            f"{job.planned.command})")  # fmt: skip


def _poll(running: list[_Job], say: Callable[[str], None], total: int, jobs: dict[str, _Job], started_at: float,
          on_slurm: dict[str, _Squeued] | None = None) -> list[_Job]:  # fmt: skip
    """Update the running jobs' states, with a line for each change; the jobs that ended. A failure raises.
    ``on_slurm``: what squeue says of the Slurm jobs (their node, a requeue, a job gone without a result)."""
    finished = []
    for job in running:
        state = _state(job.job)
        if on_slurm is not None and state in ("queued", "running"):
            _follow_on_slurm(job, on_slurm.get(str(job.job.job_id)), say, total)
        if state in (job.state, "queued"):
            continue
        now = time.monotonic()
        if state == "running":
            job.started = now
            say(f"{_pad(total)} running  {job.label}  (job {job.job.job_id})")
            job.state = state
            continue
        job.state, job.ended = state, now
        if state == "failed":
            raise RunFailed(f"run {job.planned.need.key} failed: `{job.planned.command}`: {_error(job.job)}; "
                            f"log: {job.job.paths.stderr}")  # fmt: skip
        done = sum(1 for j in jobs.values() if j.ended is not None)
        say(f"[{done:{len(str(total))}d}/{total}] done     {job.label}  in {_duration(now - (job.started or now))}: "
            f"{state.removeprefix('done: ')}  ({_duration(now - started_at)} since the start)")  # fmt: skip
        finished.append(job)
    return finished


def _pad(total: int) -> str:
    """Blanks as wide as a line's ``[ 3/47]`` counter, for the lines that have none."""
    return " " * (2 * len(str(total)) + 3)


class _Squeued(NamedTuple):
    state: str  # PENDING, RUNNING, COMPLETING, ...
    node: str  # where it runs ("" while pending)
    reason: str  # why it waits
    restarts: int  # times Slurm has requeued it


def _squeue(running: list[_Job]) -> dict[str, _Squeued] | None:
    """What squeue says of these jobs, by job id (a job missing from it has left the queue); None when
    squeue cannot answer (the controller unreachable for a moment: nothing is concluded then)."""
    ids = ",".join(str(j.job.job_id) for j in running)
    columns = "JobArrayID:|,State:|,NodeList:|,Reason:|,RestartCnt:"
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ids, "-O", columns], capture_output=True, text=True,
                             timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None  # all of them gone, or no answer
    rows = ([part.strip() for part in line.split("|")] for line in out.stdout.splitlines() if line.count("|") == 4)
    return {job_id: _Squeued(state, node, reason, int(restarts) if restarts.isdigit() else 0)
            for job_id, state, node, reason, restarts in rows}  # fmt: skip


GONE_POLLS = (
    5  # polls a job may be missing from squeue or ended there (its result file still to appear) before it is lost
)
ENDED = ("COMPLETED", "NODE_FAIL", "BOOT_FAIL", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED",
         "DEADLINE")  # fmt: skip


def _follow_on_slurm(job: _Job, seen: _Squeued | None, say: Callable[[str], None], total: int) -> None:
    """A line when a job starts on a node or is requeued (its node failed, a time limit, preemption); a
    job that left the queue without a result was lost with its node: ``RunFailed`` names both."""
    pad = _pad(total)
    if seen is None or seen.state in ENDED:  # not requeued: lost, unless its result file is about to appear
        job.gone_polls += 1
        if job.gone_polls > GONE_POLLS and not job.job.done():
            node = job.node or (seen.node if seen else "")
            how = (
                f"its job {job.job.job_id} ended {seen.state}"
                if seen
                else f"Slurm no longer knows job {job.job.job_id}"
            )
            where = f" on {node}" if node else ""
            raise RunFailed(f"run {job.planned.need.key} (`{job.planned.command}`) was lost{where}: {how} and left no "
                            "result; the completed runs stay, run the same command again to finish")  # fmt: skip
        return
    job.gone_polls = 0
    if seen.restarts > job.restarts:  # a time limit, preemption or its node lost: Slurm requeued it
        job.restarts = seen.restarts
        left = f" left {job.node}" if job.node else ""
        say(f"{pad} requeued {job.label}  (job {job.job.job_id}{left}, try {seen.restarts + 1}); it resumes "
            "from its checkpoint")  # fmt: skip
        job.node = ""
    if seen.state == "RUNNING" and seen.node and seen.node != job.node:
        job.node = seen.node
        say(f"{pad} on node  {job.label}  (job {job.job.job_id}: {seen.node})")


def _check_recorded(finished: list[_Job], plans: dict[str, list[Planned]], store: RunStore) -> None:
    """A job that ended well must have left its completed run in the launcher's store."""
    missing = {p.command for planned in plans.values() for p in planned if p.run is None}
    for job in finished:
        if job.planned.command in missing:
            raise RunFailed(f"run {job.planned.need.key} (`{job.planned.command}`) finished, but {store.location} "
                            "holds no completed run of its config: do the jobs record into the same store "
                            "(LFR_MONGO_URL, or LFR_RUNS_DIR on a shared path)?")  # fmt: skip


def _heartbeat(jobs: dict[str, _Job], started_at: float) -> str:
    """The line printed every minute: each running job, its time and its progress bar's last state."""
    now = time.monotonic()
    parts = []
    for j in jobs.values():
        if j.state == "running":
            bar = _last_progress(j.job)  # one read of its log
            parts.append(f"{j.label} {_duration(now - (j.started or now))}" + (f" [{bar}]" if bar else ""))
    done = sum(1 for j in jobs.values() if j.ended is not None)
    return f"  ... {_duration(now - started_at)}, {done} done; running: " + ("; ".join(parts) or "none")


def _last_progress(job) -> str:
    """The last state of the progress bar in a job's log (tqdm writes it to stderr), shortened."""
    try:
        with open(job.paths.stderr, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
            tail = log.read().decode(errors="replace")
    except OSError:
        return ""
    bars = [part.strip() for part in re.split(r"[\r\n]", tail) if "%|" in part]
    return re.sub(r"\|[^|]*\|", "", bars[-1])[:70] if bars else ""


def summary(jobs: Sequence[_Job], wall_s: float) -> str:
    """The waves at the end of a build: per wave, its runs, their summed time and the longest one."""
    lines = [f"made {len(jobs)} run(s) in {_duration(wall_s)}:"]
    for wave in sorted({j.wave for j in jobs}):
        mine = [j for j in jobs if j.wave == wave]
        times = {j.label: j.seconds for j in mine}
        longest = max(times, key=times.get)
        lines.append(f"  wave {wave}: {len(mine):3d} run(s), {_duration(sum(times.values()))} of run time, longest "
                     f"{longest} {_duration(times[longest])}")  # fmt: skip
    busy = sum(j.seconds for j in jobs)
    lines.append(f"  {_duration(busy)} of run time in {_duration(wall_s)}: {busy / max(wall_s, 1e-9):.2f} runs busy "
                 "on average")  # fmt: skip
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    minutes = f"{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{minutes}" if seconds >= 3600 else minutes.lstrip("0").rjust(5, "0")


def _executor(how: Launch, folder: Path, slot: int, array_parallelism: int = 1):
    """A submitit executor for one local job (its own GPU, if there are GPUs) or for Slurm arrays."""
    if how.executor == "slurm":
        executor = submitit.SlurmExecutor(
            folder=folder, python=how.slurm.python, max_num_timeout=how.slurm.max_requeues
        )
        executor.update_parameters(**how.slurm.parameters(), array_parallelism=array_parallelism)
        return executor
    import torch

    executor = submitit.LocalExecutor(folder=folder)
    gpus = torch.cuda.device_count()
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=1 if gpus else 0,
                               visible_gpus=(slot % gpus,) if gpus else ())  # fmt: skip
    return executor


def _state(job) -> str:
    """queued, running, done or failed. Running once the job's log exists (Slurm creates it when the job
    starts), which works without Slurm accounting; done or failed from submitit's result file."""
    if job.done():
        try:
            return f"done: run {job.result()}"
        except Exception:
            return "failed"
    return "running" if job.paths.stdout.exists() else "queued"


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


@contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started in the block ignore SIGINT (an ignored signal stays ignored across exec):
    a Ctrl-C at the terminal reaches the whole process group, and submitit's local job controller
    would die of it with a traceback and SIGKILL its run a second later. This process alone takes
    the Ctrl-C and cancels its jobs with SIGTERM (``_cancel``), which each run records INTERRUPTED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _cancel(handles: Sequence[Any]) -> None:
    """Cancel the jobs still running (completed runs stay in the store; the runs cancelled are INTERRUPTED).

    A local job is stopped with SIGTERM to its controller, which hands it to the run (submitit's
    own cancel sends SIGINT, which local jobs ignore: ``_children_ignore_ctrl_c``)."""
    for handle in handles:
        if handle.done():
            continue
        if isinstance(handle, submitit.local.local.LocalJob):
            with suppress(ProcessLookupError):  # it has just ended
                os.kill(int(handle.job_id), signal.SIGTERM)
        else:
            handle.cancel(check=False)

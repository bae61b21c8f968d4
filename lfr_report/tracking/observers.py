"""Which observer records a run, and the command-line entry of every experiment.

Observers are never attached at import time. ``run_commandline(ex)`` (the last line of
each script in ``experiments/``) adds the default observer only when the command
line names none of Sacred's observer flags (under torchrun, on rank 0 only: the other
ranks run unobserved):

* ``LFR_MONGO_URL`` set: ``MongoObserver`` on that server (database from the URL's
  path, else ``$LFR_MONGO_DB``, else ``lfr``); the server is pinged first so a
  missing server is one clear line, not a 30 s hang;
* otherwise: ``FileStorageObserver`` under ``$LFR_RUNS_DIR`` (default ``runs``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sacred import SETTINGS, Experiment
from sacred.observers import FileStorageObserver, MongoObserver, RunObserver
from sacred.utils import SacredInterrupt

from lfr_report import distributed
from lfr_report.errors import LfrError
from lfr_report.tracking.store import check_can_record, connect_mongo, runs_dir

# Sacred's own observer options: when one is given, the user chose the observer.
_OBSERVER_OPTIONS = ("-F", "--file_storage", "-m", "--mongo_db", "-s", "--sql", "-t", "--tiny_db",
                     "-S", "--s3", "-G", "--gcs", "-u", "--unobserved")  # fmt: skip


def default_observer() -> RunObserver:
    """MongoDB when ``LFR_MONGO_URL`` is set, else a file store under ``$LFR_RUNS_DIR``."""
    url = os.environ.get("LFR_MONGO_URL")
    if url:
        client, db = connect_mongo(url)
        check_can_record()
        return MongoObserver(client=client, db_name=db.name)
    check_can_record()
    return FileStorageObserver(str(runs_dir()))


def names_an_observer(argv: Sequence[str]) -> bool:
    """True when the command line already chooses an observer (or none, with ``-u``)."""
    return any(arg == opt or arg.startswith(opt + "=") for arg in argv for opt in _OBSERVER_OPTIONS)


def capture_without_helpers() -> None:
    """In a Slurm job, capture a run's output in Python (Sacred's ``sys`` mode), not through the
    two ``tee`` processes of its default ``fd`` mode.

    Slurm signals every process of a job step: its warning before a time limit (SIGUSR2) and
    ``scancel`` kill those ``tee`` processes, and the run's next write to stdout or stderr then
    failed with ``BrokenPipeError``, recorded FAILED instead of TIMEOUT or INTERRUPTED (seen in
    CI: the job ended failed instead of being requeued). Output written below Python (C
    libraries) is then not captured; everything Python prints is.
    """
    if os.environ.get("SLURM_JOB_ID"):
        SETTINGS.CAPTURE_MODE = "sys"


class _StopOnce:
    """The handler of the signals that stop a run: the first raises its exception, the ones
    after it are ignored with a line on stderr.

    A stopped job is signalled more than once: ``scancel`` sends SIGTERM to every process of
    the job, torchrun's agent then sends its workers SIGTERM again (and a terminal's Ctrl-C
    reaches torchrun and its workers both, as SIGINT). A second ``KeyboardInterrupt`` raised
    while Sacred handled the first (stopping its heartbeat, before calling the observers)
    left the run RUNNING and the process waiting on its heartbeat thread until SIGKILL (seen
    in CI: tests/test_two_hosts.py). ``record_uninterrupted`` sets ``stopping`` too, while a
    failed run is recorded."""

    def __init__(self, raises: dict[int, Callable[[], BaseException]]) -> None:
        self.raises = raises
        self.stopping: str | None = None  # why the block is stopping already ("SIGTERM came first")

    def __call__(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stopping is not None:
            os.write(2, f"{name} ignored: already stopping ({self.stopping}); recording the run (kill -KILL "
                        f"{os.getpid()} stops at once)\n".encode())  # fmt: skip
            return
        self.stopping = f"{name} came first"
        raise self.raises[signum]()


@contextmanager
def stop_on_signals(usr2: Callable[[], BaseException] | None = None) -> Iterator[None]:
    """Treat SIGTERM (``kill``, ``scancel``, ``docker stop``, a CI timeout) as Ctrl-C while the
    block runs, and with ``usr2``, SIGUSR2 (Slurm's warning before a time limit) as the
    exception it makes; once one of them has stopped the block, the others are ignored.

    By default SIGTERM ends Python at once: no ``finally``, no observer call, and the run
    stays RUNNING in the store for ever. As a ``KeyboardInterrupt`` it lets Sacred record
    the run as INTERRUPTED and the training loops keep their last checkpoint. Ctrl-C is
    taken over only where Python's own handler has it (a job started to ignore it keeps
    ignoring it).
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    raises: dict[int, Callable[[], BaseException]] = {signal.SIGTERM: lambda: KeyboardInterrupt(
        "stopped by signal SIGTERM")}  # fmt: skip
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        raises[signal.SIGINT] = KeyboardInterrupt
    if usr2 is not None:
        raises[signal.SIGUSR2] = usr2
    handler = _StopOnce(raises)
    previous = {signum: signal.signal(signum, handler) for signum in raises}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGUSR2 (Slurm's warning before a time limit) until the block is
    done, then act on them as usual.

    For writes that must not stop half-way: a ``KeyboardInterrupt`` raised inside
    ``torch.save`` comes out of its C++ writer as a ``RuntimeError`` ("unexpected pos"),
    so a run stopped while it checkpoints was recorded FAILED, not INTERRUPTED.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}  # fmt: skip
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in caught[:1]:  # the first signal held decides, as it would have without the block
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def record_uninterrupted(_run) -> None:
    """Sacred pre-run hook: no stop signal cuts the record of the run ``_run``.

    * each observer's writes are whole (``WritesUninterrupted``);
    * Sacred's end of a run: once its main function has returned or raised, Sacred stops the
      heartbeat, which writes a last heartbeat, and only then records the status. A stop signal
      during that last heartbeat raised out of Sacred's own ``except`` clause, so a failed run
      was never recorded and stayed RUNNING (seen in CI: torchrun's SIGTERM to rank 0 once
      another rank failed, tests/test_distributed.py). The last heartbeat is now written with
      the signals held; if the run failed, they are then ignored until its status is recorded
      (the process is ending anyway); otherwise a held signal stops the run as usual, before it
      is recorded COMPLETED.
    """
    _run.observers[:] = [WritesUninterrupted(observer) for observer in _run.observers]
    stop_heartbeat, wait_for_observers = _run._stop_heartbeat, _run._wait_for_observers
    set_here: list[_StopOnce] = []

    def stop_heartbeat_whole() -> None:
        ending = sys.exc_info()[1]  # what Sacred is handling when it stops the heartbeat, if anything
        handler = signal.getsignal(signal.SIGTERM)
        failed = ending is not None and not isinstance(ending, KeyboardInterrupt | SacredInterrupt)
        if failed and isinstance(handler, _StopOnce) and handler.stopping is None:
            handler.stopping = "the run failed"
            set_here.append(handler)
        with interrupts_deferred():
            stop_heartbeat()

    def wait_then_listen() -> None:
        wait_for_observers()
        while set_here:  # recorded: the signals stop whatever comes next again
            set_here.pop().stopping = None

    _run._stop_heartbeat, _run._wait_for_observers = stop_heartbeat_whole, wait_then_listen


class WritesUninterrupted:
    """An observer whose writes finish before Ctrl-C or SIGTERM act on them (the signal is held
    during each ``*_event`` call, then acts as usual), and whose lost writes are not forgotten.

    Sacred's file store writes ``run.json`` in place: torchrun's SIGTERM to rank 0, arriving
    while rank 0 recorded its FAILED status, cut that write and left an empty ``run.json``
    (seen in CI), a run no store could read. ``new_experiment`` wraps every observer of a run
    in this once the run has started.

    Sacred stops calling an observer whose write failed (a full disk while an artifact or the
    metrics were written) with a warning, and then still records the run COMPLETED: a run with a
    cut artifact or no metrics that a report would reuse. Here the first lost write is kept in
    ``lost``, the run is recorded FAILED with it instead of COMPLETED, and ``run_commandline``
    ends with one line and exit status 1."""

    FINAL = ("completed_event", "failed_event", "interrupted_event")

    def __init__(self, observer: RunObserver) -> None:
        self.observer = observer
        self.lost: str | None = None

    def __getattr__(self, name: str):
        attribute = getattr(self.observer, name)
        if not ((name.endswith("_event") or name == "log_metrics") and callable(attribute)):
            return attribute

        def held(*args, **kwargs):
            with interrupts_deferred():
                if name == "completed_event" and self.lost:
                    return self.observer.failed_event(fail_time=kwargs.get("stop_time", args[0] if args else None),
                                                      fail_trace=[f"lfr_report.errors.StoreError: {self.lost}\n"])  # fmt: skip
                try:
                    return attribute(*args, **kwargs)
                except Exception as exc:
                    if name not in self.FINAL and self.lost is None:
                        what = name.removesuffix("_event").replace("_", " ")
                        self.lost = f"could not record the run's {what} ({exc}); it is recorded FAILED"
                    raise

        return held


def run_commandline(ex: Experiment, argv: Sequence[str] | None = None) -> None:
    """Run ``ex`` from the command line as Sacred does, with the default observer unless one is named.

    ``--help``, ``print_config`` and the other informational commands start no run
    and need no observer, so for them none is connected. A SIGTERM stops the run as
    Ctrl-C does: recorded INTERRUPTED, one line on stderr, exit status 130.
    """
    argv = list(sys.argv if argv is None else argv)
    capture_without_helpers()
    informational = {
        "-h",
        "--help",
        "help",
        "print_config",
        "print_dependencies",
        "save_config",
        "print_named_configs",
    }
    if {"-h", "--help"}.intersection(argv[1:]):
        ex.doc = f"{(ex.doc or '').rstrip()}\n\n{named_configs_line(ex)}"
    if distributed.launched_rank() > 0:  # one run, recorded by rank 0: the others observe nothing
        argv.append("--unobserved")
    elif not names_an_observer(argv[1:]) and not informational.intersection(argv[1:]):
        try:
            ex.observers.append(default_observer())
        except LfrError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
    try:
        with stop_on_signals():
            run = ex.run_commandline(argv)
        lost = [o.lost for o in getattr(run, "observers", []) if isinstance(o, WritesUninterrupted) and o.lost]
        if lost:
            print(f"error: {lost[0]}: free space where runs are stored (or set LFR_RUNS_DIR / LFR_MONGO_URL) and "
                  "run the same command again", file=sys.stderr)  # fmt: skip
            sys.exit(1)
    except KeyboardInterrupt as exc:  # Sacred has recorded the run INTERRUPTED; its traceback says nothing more
        print(f"{ex.path}: interrupted ({exc or 'Ctrl-C'}); the run is recorded INTERRUPTED and the same command "
              "resumes it from its last checkpoint", file=sys.stderr)  # fmt: skip
        sys.exit(130)
    except SystemExit:
        if ex.current_run is not None and ex.current_run.status == "FAILED":
            distributed.report_failure(ex.current_run.fail_trace)  # for rank 0's record (under torchrun)
        raise


def named_configs_line(ex: Experiment) -> str:
    """The named configs of ``ex`` and of its ingredients, for ``--help``."""
    own = ", ".join(ex.named_configs)
    theirs = ", ".join(f"{i.path}.{name}" for i in ex.ingredients for name in i.named_configs)
    return (f"Named configs (`with NAME`; `print_config with NAME` shows what one sets): {own}"
            + (f"; of its ingredients: {theirs}" if theirs else "") + ".")  # fmt: skip


def run_location(run) -> str:
    """Where a running Sacred run is being recorded, for the summary line at its end."""
    if distributed.launched_rank() > 0:
        return "rank 0's record of this run"
    for observer in run.observers:
        while hasattr(observer, "observer"):  # WritesUninterrupted, distributed.FailureFromAnyRank: wrappers
            observer = observer.observer
        if isinstance(observer, FileStorageObserver):
            return observer.dir
        if isinstance(observer, MongoObserver):
            return f"MongoDB database {observer.runs.database.name!r}, run {run._id}"
    return "nowhere (no observer: use -F DIR or drop -u to record runs)"

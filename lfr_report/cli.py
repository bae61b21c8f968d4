"""The ``lfr`` command line (also ``python -m lfr_report``).

    lfr report vicreg [--scale default] [--out reports/vicreg.pdf]
    lfr data list | lfr data get NAME [NAME ...]
    lfr runs [--experiment vicreg] [--status COMPLETED]

Errors in the user's input or environment print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lfr_report.errors import LfrError

REPORTS = ("vicreg",)


def _report(args: argparse.Namespace) -> None:
    from lfr_report.report import vicreg
    from lfr_report.tracking import open_store

    out = Path(args.out or f"reports/{args.name}.pdf")
    path = vicreg.build(open_store(), args.scale, out)
    print(f"report written: {path}")


def _data(args: argparse.Namespace) -> None:
    from lfr_report.data import DATASETS
    from lfr_report.data.fetch import get, is_present

    if args.action == "list":
        for name, spec in DATASETS.items():
            state = "present" if is_present(name) else f"missing (get it with: {spec.get_command})"
            print(f"{name:14s} {'x'.join(map(str, spec.shape)):9s} {state}")
        return
    if not args.names:
        raise LfrError("name at least one dataset: lfr data get fashion_mnist")
    for name in args.names:
        print(f"{name}: ready, read from {get(name)}")


def _runs(args: argparse.Namespace) -> None:
    from lfr_report.tracking import open_store

    store = open_store()
    found = store.find(args.experiment, args.status)
    if not found:
        print(f"no runs in {store.location}")
        return
    print(f"{'id':>5}  {'experiment':12s} {'status':11s} {'scale':8s} {'dataset':14s} {'started':19s}  result")
    for run in found:
        result = ", ".join(f"{k}={v:.4f}" for k, v in (run.result or {}).items() if isinstance(v, float))
        print(f"{run.id:>5}  {run.experiment:12s} {run.status:11s} {run.config.get('scale', ''):8s} "
              f"{run.config.get('data', {}).get('name', ''):14s} {(run.start_time or '')[:19]:19s}  {result}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lfr", description="Tracked representation-learning experiments and their PDF reports."
    )
    sub = p.add_subparsers(dest="command", required=True)

    report = sub.add_parser(
        "report",
        help="build a PDF report, running the experiments it needs that the run store lacks",
    )
    report.add_argument("name", choices=REPORTS, help="which report")
    report.add_argument("--scale", default="default", choices=("smoke", "default", "full"),
                        help="which named config of the experiments to use (default: default)")  # fmt: skip
    report.add_argument("--out", help="output PDF (default: reports/NAME.pdf)")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="list datasets or get the offline ones")
    data.add_argument("action", choices=("list", "get"))
    data.add_argument("names", nargs="*", help="datasets to get (fashion_mnist, mnist, cifar10, stl10)")
    data.set_defaults(func=_data)

    runs = sub.add_parser("runs", help="list recorded runs, newest first")
    runs.add_argument("--experiment", help="only this experiment (e.g. vicreg)")
    runs.add_argument("--status", help="only this status (COMPLETED, FAILED, RUNNING, INTERRUPTED)")
    runs.set_defaults(func=_runs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except LfrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

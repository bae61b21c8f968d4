"""Run tracking: observer choice, the run store, and what each run records about itself."""

from lfr_report.tracking.context import describe_device, git_commit, resolve_device, seed_everything
from lfr_report.tracking.observers import default_observer, run_commandline
from lfr_report.tracking.store import FileRunStore, Metric, MongoRunStore, Run, RunStore, open_store

__all__ = [
    "FileRunStore",
    "Metric",
    "MongoRunStore",
    "Run",
    "RunStore",
    "default_observer",
    "describe_device",
    "git_commit",
    "open_store",
    "resolve_device",
    "run_commandline",
    "seed_everything",
]

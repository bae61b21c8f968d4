"""Find the run a report needs in the store, or run the experiment that makes it.

A report names each run it needs as (experiment script, named configs, config
updates). The full config that command would run with is computed with Sacred
itself (``create_run`` builds the config without starting anything), and a
COMPLETED run in the store whose config matches it on every key is reused. Code
defaults that change therefore make new runs, as they should. A key added to an
experiment later (``checks.added_later``) is read, in a run recorded without it, as
the value that run behaved as: a new option does not make every stored run stale.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shlex
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sacred import Experiment
from sacred.initialize import create_run

from lfr_report.checks import added_keys
from lfr_report.errors import Busy, ConfigError, StoreError
from lfr_report.experiment import same_data
from lfr_report.registry import EXPERIMENTS
from lfr_report.resources import experiments_dir
from lfr_report.tracking import lock
from lfr_report.tracking.observers import default_observer
from lfr_report.tracking.store import STALE_AFTER_S, Run, RunStore, with_added


def load_experiment(name: str) -> Experiment:
    """The ``ex`` object of ``experiments/<name>.py`` (imported once per process)."""
    module_name = f"lfr_experiments.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name].ex
    path = experiments_dir() / f"{name}.py"
    if name not in EXPERIMENTS or not path.is_file():
        raise ConfigError(f"no experiment {name!r} in {path.parent}; known: {', '.join(EXPERIMENTS)}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.ex


def expected_config(ex: Experiment, named_configs: Sequence[str] = (), updates: dict[str, Any] | None = None) -> dict:
    """The config a run of ``ex with <named_configs> <updates>`` would get."""
    return create_run(ex, ex.default_command, dict(updates or {}), named_configs=list(named_configs)).config


def command(experiment: str, named_configs: Sequence[Any] = (), updates: dict[str, Any] | None = None) -> str:
    """The command line of a run: ``experiments/vicreg.py with smoke no_variance mu=0.0``; an update
    whose value is a list, a dict or a string with spaces is quoted for the shell
    (``'fractions=[0.01, 0.1]'``), so the line can be pasted as it is."""
    words = [*map(str, named_configs), *(_update_word(key, value) for key, value in (updates or {}).items())]
    return " ".join([f"experiments/{experiment}.py", *(["with", *words] if words else [])])


def _update_word(key: str, value: Any) -> str:
    word = f"{key}={value}"
    spaced = isinstance(value, list | tuple | dict) or (isinstance(value, str) and any(c.isspace() for c in value))
    return shlex.quote(word) if spaced else word


def find(
    store: RunStore, experiment: str, named_configs: Sequence[str] = (), updates: dict[str, Any] | None = None
) -> Run | None:
    """The newest COMPLETED run of this exact config made on the data files present now
    (``same_data``), its config completed with the keys added since it ran, or None; what
    ``find_or_run`` reuses and the plan of ``--dry-run`` shows. Runs passed over for their
    data, or RUNNING ones that are probably dead, are named in one line each."""
    ex = load_experiment(experiment)
    config = expected_config(ex, named_configs, updates)
    added = added_keys(ex)
    for run in store.find(ex.path, None, config, added=added):
        if run.status == "COMPLETED" and same_data(run):
            try:
                store.metrics(run.id)  # what the report reads next: a damaged record is never reused
            except StoreError as exc:
                print(f"run {run.id} of {experiment} is damaged ({exc}): not reused", file=sys.stderr)
                continue
            return dataclasses.replace(run, config=with_added(run.config, added))
        if run.status == "COMPLETED":
            print(f"run {run.id} of {experiment} was made on other data files than those here now: "
                  "not reused", file=sys.stderr)  # fmt: skip
        elif run.probably_dead:
            print(f"run {run.id} of {experiment} is RUNNING with no heartbeat for over {STALE_AFTER_S // 60} "
                  "minutes: probably dead, skipped", file=sys.stderr)  # fmt: skip
    return None


def find_or_run(
    store: RunStore,
    experiment: str,
    named_configs: Sequence[str] = (),
    updates: dict[str, Any] | None = None,
) -> Run:
    """The newest COMPLETED run of this exact config made on the data files present now; runs
    the experiment first if there is none.

    Before running it, the configuration's lock is taken (``tracking.lock``): when another
    process (a second ``make report``) is running this configuration now, one line says so
    and this one waits for it, then reuses its run instead of running it a second time."""
    found = find(store, experiment, named_configs, updates)
    if found is not None:
        return found
    ex = load_experiment(experiment)
    held = lock.for_config(ex.path, expected_config(ex, named_configs, updates))
    try:
        lock.acquire(held)
    except Busy:
        print(f"{lock.holder(held)} is running `{command(experiment, named_configs, updates)}` now: waiting for it "
              "to finish, then reusing its run", file=sys.stderr)  # fmt: skip
        lock.acquire(held, wait=True)
    try:
        found = find(store, experiment, named_configs, updates)  # the process we waited for may have made it
        if found is not None:
            return found
        print(f"no completed run of `{command(experiment, named_configs, updates)}` in {store.location}: "
              "running it now", file=sys.stderr)  # fmt: skip
        # Earlier tries of this config that did not complete (stopped, requeued, killed): the new run names
        # them, and resumes from the checkpoint the last of them left.
        tries = [r.id for r in store.find(ex.path, None, expected_config(ex, named_configs, updates), added=added_keys(ex))
                 if r.status != "COMPLETED"]  # fmt: skip
        observer = default_observer()
        ex.observers.append(observer)
        try:
            run = ex.run(config_updates=dict(updates or {}), named_configs=list(named_configs),
                         info={"earlier_tries": sorted(tries, key=int)} if tries else None)  # fmt: skip
        finally:
            ex.observers.remove(observer)
        return store.get(str(run._id))
    finally:
        lock.release(held)

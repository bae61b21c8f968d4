"""What every experiment script shares: how its Sacred experiment is made, how its config is
checked, what it records about its data, and how it saves and loads encoders.

A script is its docstring, its config and named configs, a table of checks and ``main``::

    ex = new_experiment("vicreg", augment_ingredient, probe_ingredient)

    @ex.config
    def config(): ...

    checks(ex, {"epochs": positive_int, "lr": positive, "views": one_of("augment", "neighbours")})

Every key of the config is declared by one such table (the experiment's, or an
ingredient's): see ``lfr_report.checks``.

Scripts import Sacred only through this module, after ``lfr_report`` has silenced the
warning Sacred's import of ``pkg_resources`` prints.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sacred import Experiment, Ingredient
from sacred.dependencies import gather_sources_and_dependencies
from sacred.utils import apply_backspaces_and_linefeeds
from torch import nn

from lfr_report import names
from lfr_report.checks import (  # noqa: F401  (the experiments import the checks from here)
    Check,
    a_seed,
    added_later,
    at_least,
    boolean,
    check_values,
    dataset,
    declared_keys,
    device,
    integer,
    interval,
    list_of,
    mapping,
    non_negative,
    number,
    one_of,
    optional,
    pair,
    positive,
    positive_int,
    refuse_unknown,
    run_number,
    text,
)
from lfr_report.data import DatasetSpec, identity
from lfr_report.data.datasets import class_names, dataset_fingerprint
from lfr_report.distributed import FailureFromAnyRank, check_launch, launched
from lfr_report.errors import ConfigError
from lfr_report.ingredients import data_ingredient
from lfr_report.resources import experiments_dir
from lfr_report.tracking import Run, open_store
from lfr_report.tracking.artifacts import add_torch_artifact, read_encoder
from lfr_report.tracking.observers import record_uninterrupted


def new_experiment(
    name: str, *ingredients: Ingredient, data: Mapping[str, Any] | bool = True, distributed: bool = False
) -> Experiment:
    """The Sacred experiment of the calling script, with ``ingredients`` and the ``data``
    ingredient (``data.name``, ``data.train_size``, ``data.test_size``): sources stored from
    the folder that holds ``experiments/`` (the checkout, or an installed package's copy), progress bars kept out of the captured output, and a ``default``
    named config.

    ``data`` may instead be this experiment's own defaults for those keys (in Sacred an
    experiment's config cannot set an ingredient's values), or ``False`` for an experiment
    whose data is another run's: its config declares ``data`` and its config hook fills it
    in (nor can an experiment's config hook set an ingredient's values).

    ``distributed``: the script trains one run across torchrun's processes
    (``lfr_report.distributed``); under torchrun any other script stops with a one-line error
    before a run is recorded, as does a ``batch_size`` that does not divide among the processes.
    """
    if isinstance(data, Mapping):
        own = copy.copy(data_ingredient)  # the same checks and captured functions, one more config scope
        own.configurations = [*data_ingredient.configurations]
        own.add_config(dict(data))
        ingredients = (own, *ingredients)
    elif data:
        ingredients = (data_ingredient, *ingredients)
    ex = Experiment(name, ingredients=list(ingredients), base_dir=str(experiments_dir().parent))
    # Sacred reads the docstring and the sources to store from its caller's globals: the script's, not ours.
    script = sys._getframe(1).f_globals
    ex.doc = script.get("__doc__", "")
    ex.mainfile, ex.sources, ex.dependencies = gather_sources_and_dependencies(script, ex.save_git_info, ex.base_dir)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.config(_threads)
    ex.add_named_config("default", {"scale": "default"})
    if launched():
        script_name = Path(script.get("__file__", name)).name

        def check_launch_config(config, command_name, logger):
            check_launch(script_name, distributed, config.get("batch_size"))
            return {}

        def record_on_rank0_as_failed_by_any(_run):
            _run.observers[:] = [FailureFromAnyRank(observer) for observer in _run.observers]

        ex.config_hook(check_launch_config)
        ex.pre_run_hook(record_on_rank0_as_failed_by_any)
    ex.pre_run_hook(record_uninterrupted)  # last, so that it holds signals around the other wrappers too
    return ex


def _threads():
    threads = 1  # torch and BLAS threads on the CPU: part of what defines a run (CPU results depend on it), never the core count, so any machine gives the same numbers; ignored on a GPU


# --- config checks ---------------------------------------------------------------------

# Keys most experiments have: checked wherever the config holds them.
COMMON = {"scale": one_of("smoke", "default", "full", "full rehearsal"), "seed": a_seed, "device": device,
          "threads": positive_int}  # fmt: skip


def checks(ex: Experiment, table: Mapping[str, Check], extra: Callable[[dict], None] | None = None) -> None:
    """Check ``ex``'s config before a run is recorded (``lfr_report.checks``): no key that
    neither ``table``, ``COMMON`` nor an ingredient declares; each key of ``table`` (dotted
    keys such as ``data.name`` for an experiment that declares its own ``data``) must pass
    its check; then ``extra(config)`` checks what depends on several keys. A value that
    fails is one line, a ``ConfigError``: ``KEY must be EXPECTED, got VALUE``."""
    from_ingredients = declared_keys(ex)

    def check(config, command_name, logger):
        own = {**{key: rule for key, rule in COMMON.items() if key in config}, **table}
        refuse_unknown(config, {*from_ingredients, *own})
        check_values(config, own)
        if extra is not None:
            extra(config)
        return {}

    ex.config_hook(check)


# --- what runs record and reuse --------------------------------------------------------


def describe_data(spec: DatasetSpec) -> dict[str, Any]:
    """What a report needs to say about a data set: name, title, classes, channels, shape."""
    return {"name": spec.name, "title": spec.title, "classes": list(class_names(spec)), "channels": spec.channels,
            "shape": list(spec.shape)}  # fmt: skip


def record_data(run, spec: DatasetSpec, **info: Any) -> None:
    """Record in the run's info the data set its numbers are about (``data_spec``, as
    ``describe_data`` gives it), with ``info``: where its images came from, how many; and
    the fingerprint of the files of every data set the run has read (``data_fingerprints``,
    name -> fingerprint), which decides whether a report may reuse the run."""
    run.info.update(data_spec=describe_data(spec), data_fingerprints=identity.run_reads(), **info)


def same_data(run: Run) -> bool:
    """True unless ``run`` recorded fingerprints (``data_fingerprints``) of data sets whose
    files here now have others: the rule by which a report reuses a stored run. A data set
    missing here says nothing against the run (a store copied from another machine stays
    usable), nor does a run recorded before fingerprints were."""
    recorded = run.info.get("data_fingerprints") or {}
    return all(dataset_fingerprint(name) in (None, fingerprint) for name, fingerprint in recorded.items())


def completed_run(run_id: str | int) -> Run:
    """Run ``run_id`` of the run store; a ``ConfigError`` unless it COMPLETED (what it saved is final)."""
    run = open_store().get(str(run_id))
    if run.status != "COMPLETED":
        raise ConfigError(f"run {run_id} is {run.status}, not COMPLETED: what it saved is not final")
    return run


def load_encoder(run_id: str | int) -> tuple[nn.Module, dict]:
    """The encoder a COMPLETED run saved (on the CPU, eval mode) and its architecture."""
    completed_run(run_id)
    return read_encoder(open_store(), str(run_id))


def save_encoder(run, encoder: nn.Module, arch: dict) -> None:
    """Store ``encoder``'s weights and ``arch`` (``build_encoder``'s arguments) as the run's ``encoder.pt``."""
    weights = {name: value.cpu() for name, value in encoder.state_dict().items()}
    add_torch_artifact(run, names.ENCODER, {"arch": arch, "state_dict": weights})

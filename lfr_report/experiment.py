"""What every experiment script shares: how its Sacred experiment is made, how its config is
checked, what it records about its data, and how it saves and loads encoders.

A script is its docstring, its config and named configs, a table of checks and ``main``::

    ex = new_experiment("vicreg", augment_ingredient, probe_ingredient)

    @ex.config
    def config(): ...

    checks(ex, {"epochs": positive_int, "lr": positive, "views": one_of("augment", "neighbours")})

Scripts import Sacred only through this module, after ``lfr_report`` has silenced the
warning Sacred's import of ``pkg_resources`` prints.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sacred import Experiment, Ingredient
from sacred.dependencies import gather_sources_and_dependencies
from sacred.utils import apply_backspaces_and_linefeeds, get_by_dotted_path
from torch import nn

from lfr_report import names
from lfr_report.data import DatasetSpec
from lfr_report.distributed import FailureFromAnyRank, check_launch, launched
from lfr_report.errors import ConfigError
from lfr_report.ingredients import data_ingredient
from lfr_report.tracking import Run, open_store
from lfr_report.tracking.artifacts import add_torch_artifact, read_encoder
from lfr_report.tracking.context import REPO_ROOT


def new_experiment(
    name: str, *ingredients: Ingredient, data: Mapping[str, Any] | bool = True, distributed: bool = False
) -> Experiment:
    """The Sacred experiment of the calling script, with ``ingredients`` and the ``data``
    ingredient (``data.name``, ``data.train_size``, ``data.test_size``): sources stored from
    the repository root, progress bars kept out of the captured output, and a ``default``
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
    ex = Experiment(name, ingredients=list(ingredients), base_dir=str(REPO_ROOT))
    # Sacred reads the docstring and the sources to store from its caller's globals: the script's, not ours.
    script = sys._getframe(1).f_globals
    ex.doc = script.get("__doc__", "")
    ex.mainfile, ex.sources, ex.dependencies = gather_sources_and_dependencies(script, ex.save_git_info, ex.base_dir)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
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
    return ex


# --- config checks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What a config value must be (``expected``, as the error says it) and the test of it."""

    expected: str
    test: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


integer = Check("an integer", _is_int)
positive_int = Check("a positive integer", lambda v: _is_int(v) and v >= 1)
positive = Check("a number > 0", lambda v: _is_number(v) and v > 0)
non_negative = Check("a number >= 0", lambda v: _is_number(v) and v >= 0)


def at_least(low: int, why: str = "") -> Check:
    """An integer >= ``low``; ``why`` says what needs it."""
    return Check(f"an integer >= {low}" + (f" ({why})" if why else ""), lambda v: _is_int(v) and v >= low)


def interval(text: str) -> Check:
    """A number in ``text``, an interval such as ``"(0, 1]"`` or ``"[0, 1)"``."""
    low, high = (float(x) for x in text[1:-1].split(","))
    above = (lambda v: v >= low) if text[0] == "[" else (lambda v: v > low)
    below = (lambda v: v <= high) if text[-1] == "]" else (lambda v: v < high)
    return Check(f"a number in {text}", lambda v: _is_number(v) and above(v) and below(v))


def one_of(*choices: str) -> Check:
    """One of ``choices``."""
    said = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
    return Check(said, lambda v: v in choices)


def optional(check: Check) -> Check:
    """``check``, or None."""
    return Check(f"{check.expected} or None", lambda v: v is None or check.test(v))


def list_of(check: Check) -> Check:
    """A non-empty list whose every item passes ``check``."""
    return Check(f"a non-empty list, each {check.expected}",
                 lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(check.test(x) for x in v))  # fmt: skip


def checks(ex: Experiment, table: Mapping[str, Check], extra: Callable[[dict], None] | None = None) -> None:
    """Check ``ex``'s config before a run is recorded: each key of ``table`` (dotted keys
    such as ``probe.lr`` reach into ingredients) must pass its check, then ``extra(config)``
    checks what depends on several keys. A value that fails is one line, a ``ConfigError``:
    ``KEY must be EXPECTED, got VALUE``."""

    def check(config, command_name, logger):
        for key, rule in table.items():
            value = get_by_dotted_path(config, key)
            if not rule.test(value):
                raise ConfigError(f"{key} must be {rule.expected}, got {value!r}")
        if extra is not None:
            extra(config)
        return {}

    ex.config_hook(check)


# --- what runs record and reuse --------------------------------------------------------


def describe_data(spec: DatasetSpec) -> dict[str, Any]:
    """What a report needs to say about a data set: name, title, classes, channels, shape."""
    return {"name": spec.name, "title": spec.title, "classes": list(spec.classes), "channels": spec.channels,
            "shape": list(spec.shape)}  # fmt: skip


def record_data(run, spec: DatasetSpec, **info: Any) -> None:
    """Record in the run's info the data set its numbers are about (``data_spec``, as
    ``describe_data`` gives it), with ``info``: where its images came from, how many."""
    run.info.update(data_spec=describe_data(spec), **info)


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

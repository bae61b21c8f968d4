"""The runs a report needs, declared: ``Need`` (one run: experiment, named configs, updates,
its role), ``After`` (a value known once earlier runs exist, such as ``run_id``), and
``gather``, which finds or makes them in the order declared.

A ``Need`` may use a run declared before it, through ``After``: ``run_id("vicreg")`` is
the id of the run declared as ``vicreg``, which makes the dependency explicit::

    Need("vicreg", "vicreg", [scale], role="VICReg (Q1-Q3)")
    Need("no_neighbours", "vicreg", [scale, "no_generated_neighbours"],
         {"neighbours_from": run_id("vicreg")}, role="ablation 2, from run {vicreg.id}")

Report modules import these through ``lfr_report.report.spec``; the launcher plans with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

from lfr_report.running.runner import command, find_or_run
from lfr_report.tracking.store import Run, RunStore, run_key

Runs = dict[str, Run]  # the runs a report found, by the key of their Need

REHEARSAL = "rehearsal"  # every experiment's named config that keeps a scale's settings and shrinks its sizes


@dataclass(frozen=True)
class After:
    """A value known once the runs ``keys`` exist: ``compute(store, *those runs)``; ``shown``
    is how the manual writes it in a command (``<best solver>``, ``<vicreg run>``)."""

    keys: tuple[str, ...]
    compute: Callable[..., Any]
    shown: str = ""

    def resolve(self, store: RunStore, runs: Runs) -> Any:
        return self.compute(store, *(runs[key] for key in self.keys))

    def __str__(self) -> str:
        return self.shown or f"<from {', '.join(self.keys)}>"


def run_id(key: str) -> After:
    """The id of the run declared as ``key``, typed as Sacred writes ids (so it matches command-line runs)."""
    return After((key,), lambda store, run: run_key(run.id), shown=f"<{key} run>")


@dataclass(frozen=True)
class Need:
    """One run a report needs: ``experiments/<experiment>.py with <named> <updates>``.

    ``named`` and ``updates`` values may be ``After`` values; ``role`` is what the first
    page says the run is for, formatted with the runs found so far (``{vicreg.id}``), or a
    function of them.
    """

    key: str
    experiment: str
    named: Sequence[str | After] = ()
    updates: Mapping[str, Any] = field(default_factory=dict)
    role: str | Callable[[Runs], str] = ""

    @property
    def after(self) -> tuple[str, ...]:
        """Keys of the runs this one depends on."""
        values = [*self.named, *self.updates.values()]
        return tuple(dict.fromkeys(key for v in values if isinstance(v, After) for key in v.keys))

    def resolved(self, store: RunStore, runs: Runs) -> tuple[list[str], dict[str, Any]]:
        """Named configs and updates with every ``After`` replaced by its value."""

        def value(v: Any) -> Any:
            return v.resolve(store, runs) if isinstance(v, After) else v

        return [value(n) for n in self.named], {k: value(v) for k, v in self.updates.items()}

    def describe(self, runs: Runs) -> str:
        return self.role(runs) if callable(self.role) else self.role.format(**runs)

    def shown(self) -> tuple[str, str]:
        """The command and the role as the manual shows them, before any run exists: each
        ``After`` as its placeholder, ``{vicreg.id}`` as ``<vicreg run>``, a role computed
        from the runs as its ``shown`` attribute."""
        shown = command(self.experiment, self.named, dict(self.updates))
        if callable(self.role):
            return shown, getattr(self.role, "shown", "")
        placeholders = {key: SimpleNamespace(id=f"<{key} run>") for key in re.findall(r"{(\w+)\.", self.role)}
        return shown, self.role.format(**placeholders)


class Declared(Protocol):
    """What the launcher needs of a report: its name and the runs it needs at a scale."""

    name: str

    def needed(self, scale: str, rehearse: bool = False) -> list[Need]: ...


def gather(needs: Sequence[Need], store: RunStore) -> Runs:
    """Each needed run from the store, running the missing ones in the order declared."""
    runs: Runs = {}
    for need in needs:
        missing = [key for key in need.after if key not in runs]
        if missing:
            raise ValueError(f"run {need.key!r} uses {missing}, which are declared after it")
        named, updates = need.resolved(store, runs)
        runs[need.key] = find_or_run(store, need.experiment, named, updates)
    return runs

"""A report as a small declaration, and the one ``build`` that turns any of them into a PDF.

A report module declares ``REPORT = Report(...)``: its name, title, template and note
keys, the runs it needs (``needs(scale)``, a list of ``Need``) and ``sections``, which
reads those runs and returns the template's figures, tables and numbers. ``build`` does
the rest for every report: it finds each needed run in the store (or runs it, in the
order declared), lists them on the first page with their roles, reads the user's notes
and renders the PDF.

A ``Need`` may use a run declared before it, through ``After``: ``run_id("vicreg")`` is
the id of the run declared as ``vicreg``, which makes the dependency explicit::

    Need("vicreg", "vicreg", [scale], role="VICReg (Q1-Q3)")
    Need("no_neighbours", "vicreg", [scale, "no_generated_neighbours"],
         {"neighbours_from": run_id("vicreg")}, role="ablation 2, from run {vicreg.id}")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lfr_report.report.document import Document, data_sources, run_summary
from lfr_report.report.notes import read_note
from lfr_report.report.render import render_html, write_pdf
from lfr_report.report.runner import find_or_run
from lfr_report.tracking.store import Run, RunStore, run_key

Runs = dict[str, Run]  # the runs a report found, by the key of their Need

REHEARSAL = "rehearsal"  # every experiment's named config that keeps a scale's settings and shrinks its sizes


@dataclass(frozen=True)
class After:
    """A value known once the runs ``keys`` exist: ``compute(store, *those runs)``."""

    keys: tuple[str, ...]
    compute: Callable[..., Any]

    def resolve(self, store: RunStore, runs: Runs) -> Any:
        return self.compute(store, *(runs[key] for key in self.keys))


def run_id(key: str) -> After:
    """The id of the run declared as ``key``, typed as Sacred writes ids (so it matches command-line runs)."""
    return After((key,), lambda store, run: run_key(run.id))


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


@dataclass(frozen=True)
class Report:
    """What a report is: everything ``build`` needs to make its PDF."""

    name: str  # short name: `lfr report NAME`, reports/NAME.pdf, notes/NAME/, the page header
    title: str  # the first page's title (``sections`` may set ``doc.title`` from the runs)
    template: str  # in templates/
    note_keys: tuple[str, ...]  # notes/<name>/<key>.md, one per question the user answers
    needs: Callable[[str], list[Need]]  # the runs at a scale, each after those it uses
    sections: Callable[[RunStore, Runs, Document], dict[str, Any]]  # the template's figures, tables, numbers

    def needed(self, scale: str, rehearse: bool = False) -> list[Need]:
        """The runs this report needs at ``scale``; ``rehearse``: each with the ``rehearsal``
        named config last, so that only its sizes differ from ``scale``'s (its sizes win)."""
        needs = self.needs(scale)
        return [replace(need, named=[*need.named, REHEARSAL]) for need in needs] if rehearse else needs

    def gather(self, store: RunStore, scale: str, rehearse: bool = False) -> Runs:
        """Every run this report needs at ``scale``, found in ``store`` or run now."""
        return gather(self.needed(scale, rehearse), store)

    def build(self, store: RunStore, scale: str, out: Path, rehearse: bool = False) -> Path:
        """Find (or run) every run this report needs at ``scale`` and write its PDF to ``out``."""
        return build(self, store, scale, out, rehearse)


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


def build(report: Report, store: RunStore, scale: str, out: Path, rehearse: bool = False) -> Path:
    """Find (or run) every run ``report`` needs at ``scale`` (``rehearse``: with sizes shrunk)
    and write its PDF to ``out``."""
    needs = report.needed(scale, rehearse)
    runs = gather(needs, store)
    doc = Document(title=report.title, report=report.name)
    sections = report.sections(store, runs, doc)
    context = {
        "doc": doc,
        "runs": [{**run_summary(runs[need.key]), "role": need.describe(runs)} for need in needs],
        "data_sources": data_sources([runs[need.key] for need in needs]),
        "notes": {key: read_note(report.name, key) for key in report.note_keys},
        **sections,
    }
    return write_pdf(render_html(report.template, context), out)

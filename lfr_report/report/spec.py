"""A report as a small declaration, and the one ``build`` that turns any of them into a PDF.

A report module declares ``REPORT = Report(...)``: its name, title, template and note
keys, the runs it needs (``needs(scale)``, a list of ``Need``) and ``sections``, which
reads those runs and returns the template's figures, tables and numbers. ``build`` does
the rest for every report: it finds each needed run in the store (or has it made, in the
order declared: ``lfr_report.running``), lists them on the first page with their roles,
reads the user's notes and renders the PDF.

This is the one module of ``report/`` that reaches the making of runs, through
``gather``; the report modules import ``Need``, ``After`` and ``run_id`` from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lfr_report.report.document import Document, data_sources, run_summary
from lfr_report.report.notes import read_note
from lfr_report.report.render import render_html, write_pdf
from lfr_report.running.needs import REHEARSAL, After, Need, Runs, gather, run_id
from lfr_report.tracking.store import RunStore

__all__ = ["After", "Need", "Report", "Runs", "build", "gather", "run_id"]


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

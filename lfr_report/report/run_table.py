"""The table of runs each report page of the manual shows, generated from the report's own
declaration (``Report.needs``), so that the manual cannot list a run the report does not
make, or miss one it does.

The table sits in ``docs/reports/<name>.md`` between ``<!-- runs: begin -->`` and
``<!-- runs: end -->``; ``make docs-tables`` rewrites it and ``tests/test_docs_commands.py``
fails when it differs from what the declaration gives.
"""

from __future__ import annotations

import re
from pathlib import Path

from lfr_report.report.spec import Report

BEGIN, END = "<!-- runs: begin -->", "<!-- runs: end -->"
SCALE = "default"  # the scale the manual's tables show (the others differ only in the scale's name)


def markdown(report: Report, scale: str = SCALE) -> str:
    """One row per run the report needs at ``scale``: its key, its command and its role."""
    rows = ["| run | command | what it is for |", "| --- | --- | --- |"]
    for need in report.needs(scale):
        command, role = need.shown()
        rows.append(f"| {need.key} | `{command}` | {_escaped(role)} |")
    return "\n".join(rows)


def _escaped(text: str) -> str:
    """A role as Markdown table text: a pipe would end the cell (|D| is common here) and a
    placeholder such as <vicreg run> would be read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def updated(page: str, report: Report) -> str:
    """``page`` with its run table replaced by the one the declaration gives."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise ValueError(f"no {BEGIN} ... {END} block for report {report.name}")
    return pattern.sub(lambda _: f"{BEGIN}\n{markdown(report)}\n{END}", page)


def page_of(report: Report, docs: Path) -> Path:
    return docs / "reports" / f"{report.name}.md"

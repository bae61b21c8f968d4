"""Rewrite the run table of each report's manual page (docs/reports/NAME.md) from the
report's declaration: `make docs-tables`. The test suite fails while a page differs."""

from __future__ import annotations

from pathlib import Path

from lfr_report.registry import REPORTS, report
from lfr_report.report.run_table import page_of, updated

DOCS = Path(__file__).resolve().parents[1] / "docs"

if __name__ == "__main__":
    for name in REPORTS:
        page = page_of(report(name), DOCS)
        text = page.read_text()
        new = updated(text, report(name))
        if new != text:
            page.write_text(new)
            print(f"rewrote the run table of {page.relative_to(DOCS.parent)}")

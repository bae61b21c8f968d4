"""HTML from a Jinja2 template, PDF from the HTML with WeasyPrint.

Templates live in the top-level ``templates/`` folder, or the copy an installed package
carries (``lfr_report.resources``; ``$LFR_TEMPLATES_DIR`` overrides it). The PDF is written
to a temporary file beside the target and renamed over it, so a failed build never leaves a
half-written report in place of the last good one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from lfr_report.resources import templates_dir


def render_html(template: str, context: dict[str, Any]) -> str:
    """Render ``templates/<template>``; an undefined variable is an error, not an empty string."""
    env = Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, digits=1: f"{100 * x:.{digits}f}%"
    return env.get_template(template).render(**context)


def write_pdf(html: str, out: Path) -> Path:
    """Write ``html`` as a PDF to ``out`` atomically; returns ``out``."""
    # Quiet WeasyPrint before importing it: it logs progress while loading its stylesheets.
    for name in ("weasyprint", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        HTML(string=html, base_url=str(templates_dir())).write_pdf(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

"""The user's own discussion, per question, in Markdown files the report places under it.

``notes/<report>/<key>.md`` (``$LFR_NOTES_DIR`` moves ``notes``), e.g. ``notes/vicreg/q4.md``.
A missing file gives a one-line pointer saying where to write it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import markdown
from markupsafe import Markup


def notes_dir() -> Path:
    return Path(os.environ.get("LFR_NOTES_DIR", "notes"))


@dataclass(frozen=True)
class Note:
    path: str  # where the file is (or would be)
    html: Markup | None  # the rendered Markdown, None when there is no file


def read_note(report: str, key: str) -> Note:
    path = notes_dir() / report / f"{key}.md"
    if not path.is_file():
        return Note(str(path), None)
    return Note(str(path), Markup(markdown.markdown(path.read_text(encoding="utf-8"), extensions=["tables"])))

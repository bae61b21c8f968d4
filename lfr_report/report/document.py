"""Numbered figures and tables, and the per-run facts every report prints.

A ``Document`` hands out figure and table numbers in the order the report code asks
for them, which is the order the template shows them; each item carries the line
that traces it to its run ("run 7 · fashion_mnist · default scale").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lfr_report.tracking.store import Run


@dataclass(frozen=True)
class Item:
    """A numbered figure or table."""

    number: int
    caption: str
    source: str  # the run it came from
    uri: str | None = None  # the image, for figures
    width: int = 100  # percent of the text width the figure takes


def run_dataset(run: Run) -> str:
    """The dataset a run used: its ``data.name`` config, or (downstream runs) the one it recorded."""
    return run.config.get("data", {}).get("name") or run.info.get("dataset", "?")


def source_line(*runs: Run) -> str:
    """``run <id> · <dataset> · <scale> scale``; ``runs <id>, <id> · ...`` for several runs."""
    ids = ", ".join(dict.fromkeys(run.id for run in runs))
    datasets = " / ".join(dict.fromkeys(run_dataset(run) for run in runs))
    scales = " / ".join(dict.fromkeys(str(run.config.get("scale", "?")) for run in runs))
    return f"{'runs' if ',' in ids else 'run'} {ids} · {datasets} · {scales} scale"


@dataclass
class Document:
    title: str
    report: str  # short name, for the page header
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    figures: list[Item] = field(default_factory=list)
    tables: list[Item] = field(default_factory=list)

    def figure(self, uri: str, caption: str, *runs: Run, width: int = 100) -> Item:
        """A numbered figure; ``runs`` are the runs whose numbers it shows."""
        item = Item(len(self.figures) + 1, caption, source_line(*runs), uri, width)
        self.figures.append(item)
        return item

    def table(self, caption: str, *runs: Run) -> Item:
        """A numbered table; ``runs`` are the runs whose numbers it shows."""
        item = Item(len(self.tables) + 1, caption, source_line(*runs))
        self.tables.append(item)
        return item


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


def run_seconds(run: Run) -> float | None:
    """How long a finished run took, in seconds (None while it has no stop time)."""
    start, stop = _parse(run.start_time), _parse(run.stop_time)
    return (stop - start).total_seconds() if start and stop else None


def report_options(scale: str) -> str:
    """The ``lfr report`` options that make runs of ``scale`` (a config's ``scale`` value):
    ``full rehearsal``, the ``rehearsal`` named config after ``full``, is ``--scale full --rehearse``."""
    base, _, rehearsal = scale.partition(" ")
    return f"--scale {base}" + (" --rehearse" if rehearsal == "rehearsal" else "")


def data_sources(runs: list[Run]) -> list[str]:
    """Where the runs read their data, each place once, in the order first met: a run that
    read several (a distillation run's ``train; test``, its second task) gives each of them."""
    found = [part for run in runs for part in str(run.info.get("data_source", "")).split("; ") if part]
    return list(dict.fromkeys(found))


def run_summary(run: Run) -> dict[str, Any]:
    """What the first page says about a run: what, when, where, from which code."""
    start, elapsed = _parse(run.start_time), run_seconds(run)
    duration = ""
    if elapsed is not None:
        seconds = int(elapsed)
        duration = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    gpus = run.host.get("gpus", {}).get("gpus", []) if isinstance(run.host.get("gpus"), dict) else []
    return {
        "id": run.id,
        "experiment": run.experiment,
        "scale": run.config.get("scale", ""),
        "dataset": run_dataset(run),
        "status": run.status,
        "started": start.strftime("%m-%d %H:%M") if start else "",
        "duration": duration,
        "device": run.info.get("device", ""),
        "cpu": run.host.get("cpu", ""),
        "gpus": ", ".join(g.get("model", "") for g in gpus),
        "host": run.host.get("hostname", ""),
        "python": run.host.get("python_version", ""),
        "torch": run.info.get("torch", ""),
        "commit": run.commit or "unknown",
        "data_source": run.info.get("data_source", ""),
        "command": f"python experiments/{run.experiment}.py with {run.config.get('scale', '')}",
        "report_options": report_options(str(run.config.get("scale", ""))),
        "resumed_from_epoch": run.info.get("resumed_from_epoch", 0),
    }

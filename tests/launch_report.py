"""A small real report for the executor tests: an encoder and two evaluations that name it.

Three smoke-scale runs of the real experiments (VICReg, then retrieval and anomaly
detection with its encoder), so the plan has two waves and the second one's configs
need the first one's run id. Its template (``TEMPLATE``, written by the test into
``$LFR_TEMPLATES_DIR``) prints every number the runs returned, to six decimals.
"""

from __future__ import annotations

from typing import Any

from lfr_report.report.document import Document
from lfr_report.report.spec import Need, Report, Runs, run_id
from lfr_report.tracking.store import RunStore

NAME = "launch_test"
TEMPLATE = """<html><body><h1>{{ doc.title }}</h1>
{% for run in runs %}<p>{{ run.role }}: run {{ run.id }}, {{ run.experiment }}, {{ run.status }}</p>{% endfor %}
{% for name, value in numbers %}<p>{{ name }}: {{ "%.6f"|format(value) }}</p>{% endfor %}
</body></html>
"""


def needs(scale: str) -> list[Need]:
    return [
        Need("encoder", "vicreg", [scale], role="encoder"),
        *(Need(task, "downstream", [scale], {"task": task, "encoder_run": run_id("encoder")},
               role=f"{task} with run {{encoder.id}}") for task in ("retrieval", "anomaly")),
    ]  # fmt: skip


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    numbers = [(f"{key} {name}", value) for key, run in runs.items()
               for name, value in sorted((run.result or {}).items()) if isinstance(value, float)]  # fmt: skip
    numbers.append(("encoder train_loss", store.metrics(runs["encoder"].id)["train_loss"].last))
    return {"numbers": numbers}


REPORT = Report(NAME, "Three dependent runs", f"{NAME}.html", (), needs, sections)

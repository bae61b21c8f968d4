"""A one-run report for the requeue tests (tests/test_two_hosts.py): VICReg at smoke scale on
all 2,048 synthetic images for twelve epochs (about 1.5 s each here; ``LFR_TEST_RESUME_EPOCHS``
sets more), long enough to be stopped after its first epoch's checkpoint. Its template
(``TEMPLATE``) prints the run's numbers to six decimals."""

from __future__ import annotations

import os
from typing import Any

from lfr_report.report.document import Document
from lfr_report.report.spec import Need, Report, Runs
from lfr_report.tracking.store import RunStore

NAME = "resume_test"
TEMPLATE = """<html><body><h1>{{ doc.title }}</h1>
{% for name, value in numbers %}<p>{{ name }}: {{ "%.6f"|format(value) }}</p>{% endfor %}
</body></html>
"""


def needs(scale: str) -> list[Need]:
    epochs = int(os.environ.get("LFR_TEST_RESUME_EPOCHS", "12"))  # the real time limit's test asks for more
    return [Need("encoder", "vicreg", [scale], {"epochs": epochs, "data.train_size": 2048}, role="encoder")]


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    run = runs["encoder"]
    numbers = [(name, value) for name, value in sorted((run.result or {}).items()) if isinstance(value, float)]
    return {"numbers": [*numbers, ("train_loss", store.metrics(run.id)["train_loss"].last)]}


REPORT = Report(NAME, "A run stopped and resumed", f"{NAME}.html", (), needs, sections)

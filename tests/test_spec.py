"""The report declaration: runs found in the order declared, dependencies resolved to run ids,
roles written from the runs (the layering of the modules: tests/test_layers.py)."""

from __future__ import annotations

import pytest

from lfr_report.registry import REPORTS, report
from lfr_report.report.render import templates_dir
from lfr_report.report.spec import After, Need, gather, run_id
from lfr_report.running import needs as needs_module
from lfr_report.tracking.store import Run


@pytest.fixture
def made(monkeypatch):
    """find_or_run replaced by a recorder: each call 'makes' the next run id."""
    calls = []

    def fake_find_or_run(store, experiment, named=(), updates=None):
        calls.append((experiment, list(named), dict(updates or {})))
        return Run(id=str(len(calls)), experiment=experiment, status="COMPLETED", config={"named": list(named)})

    monkeypatch.setattr(needs_module, "find_or_run", fake_find_or_run)
    return calls


def test_needs_run_in_order_with_their_dependencies_resolved(made):
    pick = After(("a", "b"), lambda store, a, b: f"from-{a.id}-{b.id}")
    needs = [
        Need("a", "vicreg", ["smoke"], role="first"),
        Need("b", "vicreg", ["smoke", "no_variance"], role="second, after run {a.id}"),
        Need(
            "c", "downstream", ["smoke", pick], {"encoder_run": run_id("b")}, role=lambda runs: f"uses {runs['b'].id}"
        ),
    ]
    assert [n.after for n in needs] == [(), (), ("a", "b")]
    runs = gather(needs, store=None)
    assert made == [("vicreg", ["smoke"], {}), ("vicreg", ["smoke", "no_variance"], {}),
                    ("downstream", ["smoke", "from-1-2"], {"encoder_run": 2})]  # fmt: skip
    assert [n.describe(runs) for n in needs] == ["first", "second, after run 1", "uses 2"]


def test_a_need_that_uses_a_later_run_is_an_error(made):
    with pytest.raises(ValueError, match=r"run 'early' uses \['late'\], which are declared after it"):
        gather([Need("early", "downstream", ["smoke"], {"encoder_run": run_id("late")}),
                     Need("late", "vicreg", ["smoke"])], store=None)  # fmt: skip
    assert made == []


@pytest.mark.parametrize("name", REPORTS)
def test_every_registered_report_declares_itself_and_its_template(name):
    declared = report(name)
    assert declared.name == name and (templates_dir() / declared.template).is_file()
    for scale in ("smoke", "default", "full"):
        needs = declared.needs(scale)
        keys = [n.key for n in needs]
        assert len(keys) == len(set(keys)), keys
        for i, need in enumerate(needs):
            assert set(need.after) <= set(keys[:i]), need.key  # each after the runs it uses
            assert scale in need.named

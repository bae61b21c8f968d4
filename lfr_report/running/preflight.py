"""Before a report trains anything: is every data set its runs name on disk?

A ``full`` report runs for hours on a GPU; one data set missing (CIFAR-10, STL-10 are not
in any package registry) should stop it in seconds, not when the run that reads it
starts. ``check_data`` computes, with Sacred, the config of every run a report needs
that does not wait on another run (those read their data from the run they evaluate),
collects every config value that names a registered data set (``data.name``,
``transfer``, ``anomaly_data``, ``second_task``...) and loads each one's train and
test splits; the ones that fail are one ``DataError`` line, each saying where it was
looked for and how to get it. Nothing is recorded. With ``download``, a missing data set
that has an official archive (CIFAR-10, STL-10, Tiny ImageNet: ``data/download.py``) is fetched first, as
``lfr data get`` would; one that still does not load is in the line with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lfr_report.data import DATASETS, load_dataset
from lfr_report.data.download import ARCHIVES
from lfr_report.data.fetch import get
from lfr_report.errors import DataError
from lfr_report.running.runner import expected_config, load_experiment

if TYPE_CHECKING:
    from lfr_report.running.needs import Need


def named_datasets(config: Mapping[str, Any]) -> list[str]:
    """The registered data sets a config names, anywhere in it (in order, once each)."""

    def walk(value: Any) -> Iterable[str]:
        if isinstance(value, Mapping):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)
        elif isinstance(value, str) and value in DATASETS:
            yield value

    return list(dict.fromkeys(walk(config)))


def _load_both(name: str) -> None:
    for split in ("train", "test"):
        load_dataset(name, split)


def check_data(needs: Sequence[Need], download: bool = False) -> None:
    """Raise one ``DataError`` naming every data set these runs need that does not load
    (after fetching the missing ones that have an official archive, with ``download``)."""
    wanted: dict[str, None] = {}
    for need in needs:
        if need.after:
            continue  # its config depends on runs not made yet; its data is theirs
        logging.disable(logging.WARNING)  # Sacred's notes on config types: the run itself prints them
        try:
            config = expected_config(load_experiment(need.experiment), list(need.named), dict(need.updates))
        finally:
            logging.disable(logging.NOTSET)
        wanted.update(dict.fromkeys(named_datasets(config)))
    problems = []
    for name in wanted:
        try:
            _load_both(name)
        except DataError as exc:
            if not (download and name in ARCHIVES):
                problems.append(str(exc))
                continue
            try:
                print(f"{name} is missing: fetching its official archive (--no-download stops here instead)")
                get(name)
                _load_both(name)
            except DataError as fetch_error:
                problems.append(str(fetch_error))
    if problems:
        raise DataError("; ".join(problems))

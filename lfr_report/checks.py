"""Typed configs: one declaration per config key, checked before a run is recorded.

Each experiment (``lfr_report.experiment.checks``) and each ingredient (``declare``) states
what every one of its keys must be, as a table ``key -> Check``. Sacred's config hooks run
the tables before the run exists, so a bad value is one line (a ``ConfigError``:
``KEY must be EXPECTED, got VALUE``), exit status 1, and no run in the store. The same
tables say which keys exist: a key the tables do not declare (``data.nosuch=3``) is refused
naming the keys that do, instead of Sacred's "Conflicting configuration values".

Numbers are finite and integers fit in 64 bits: ``1e400`` (infinity) and ``10**30`` are
refused here, not deep inside torch. A bool is not a number (Python says it is).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sacred import Ingredient
from sacred.utils import get_by_dotted_path

from lfr_report.errors import ConfigError

_LIMIT = 2**63  # what torch and NumPy hold in an int64


@dataclass(frozen=True)
class Check:
    """What a config value must be (``expected``, as the error says it) and the test of it."""

    expected: str
    test: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_LIMIT < value < _LIMIT


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -_LIMIT < value < _LIMIT if isinstance(value, int) else math.isfinite(value)


integer = Check("an integer", _is_int)
positive_int = Check("a positive integer", lambda v: _is_int(v) and v >= 1)
a_seed = Check("an integer in [0, 2**32)", lambda v: _is_int(v) and 0 <= v < 2**32)
positive = Check("a number > 0", lambda v: _is_number(v) and v > 0)
non_negative = Check("a number >= 0", lambda v: _is_number(v) and v >= 0)
number = Check("a number", _is_number)
boolean = Check("true or false", lambda v: isinstance(v, bool))
text = Check("a non-empty string", lambda v: isinstance(v, str) and len(v.strip()) > 0 and len(v) <= 1000)
mapping = Check("a mapping of config keys to values (like {'mu': 0.0})", lambda v: isinstance(v, Mapping))
run_number = Check("a run id (a positive integer)", lambda v: (_is_int(v) and v >= 1) or
               (isinstance(v, str) and v.isdigit() and 0 < int(v) < _LIMIT))  # fmt: skip
device = Check("auto, cpu, cuda or cuda:N",
               lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", v) is not None)  # fmt: skip


def _dataset_check() -> Check:
    from lfr_report.data.datasets import DATASETS

    return Check(f"a registered dataset ({', '.join(DATASETS)})", lambda v: isinstance(v, str) and v in DATASETS)


dataset = _dataset_check()


def at_least(low: int, why: str = "") -> Check:
    """An integer >= ``low``; ``why`` says what needs it."""
    return Check(f"an integer >= {low}" + (f" ({why})" if why else ""), lambda v: _is_int(v) and v >= low)


def interval(text: str) -> Check:
    """A number in ``text``, an interval such as ``"(0, 1]"`` or ``"[0, 1)"``."""
    low, high = (float(x) for x in text[1:-1].split(","))
    above = (lambda v: v >= low) if text[0] == "[" else (lambda v: v > low)
    below = (lambda v: v <= high) if text[-1] == "]" else (lambda v: v < high)
    return Check(f"a number in {text}", lambda v: _is_number(v) and above(v) and below(v))


def one_of(*choices: Any) -> Check:
    """One of ``choices``."""
    shown = [str(c) for c in choices]
    said = f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]
    return Check(said, lambda v: isinstance(v, str | type(None)) and v in choices)


def optional(check: Check) -> Check:
    """``check``, or None."""
    return Check(f"{check.expected} or None", lambda v: v is None or check.test(v))


def list_of(check: Check) -> Check:
    """A non-empty list whose every item passes ``check``."""
    return Check(f"a non-empty list, each {check.expected}",
                 lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(check.test(x) for x in v))  # fmt: skip


def pair(check: Check, ordered: bool = True) -> Check:
    """Two values that pass ``check`` (low first when ``ordered``: a range such as a crop scale)."""
    said = f"a pair [low, high] with low <= high, each {check.expected}" if ordered else \
        f"a pair, each {check.expected}"  # fmt: skip

    def test(v: Any) -> bool:
        return isinstance(v, list | tuple) and len(v) == 2 and all(check.test(x) for x in v) and \
            (not ordered or v[0] <= v[1])  # fmt: skip

    return Check(said, test)


def check_values(config: Mapping[str, Any], table: Mapping[str, Check], prefix: str = "") -> None:
    """Each key of ``table`` (dotted keys reach into ingredients), under ``prefix``, passes its check."""
    for key, rule in table.items():
        value = get_by_dotted_path(config, prefix + key)
        if not rule.test(value):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise ConfigError(f"{prefix}{key} must be {rule.expected}, got {shown}")


def declare(ingredient: Ingredient, table: Mapping[str, Check]) -> None:
    """An ingredient's table: checked by its own config hook, and read by the experiments
    that use it (``declared_keys``) to know which keys exist."""
    ingredient.lfr_checks = dict(table)  # type: ignore[attr-defined]

    def check(config, command_name, logger):
        check_values(config, table, ingredient.path + ".")
        return {}

    ingredient.config_hook(check)


def declared_keys(ingredient: Ingredient) -> dict[str, Check]:
    """Every key ``ingredient`` and its sub-ingredients declare, dotted from the top of the config."""
    found = {}
    for sub in ingredient.ingredients:
        found.update({f"{sub.path}.{key}": rule for key, rule in getattr(sub, "lfr_checks", {}).items()})
        found.update(declared_keys(sub))
    return found


def added_later(ingredient: Ingredient, keys: Mapping[str, Any]) -> None:
    """Keys added to ``ingredient``'s config after runs were recorded without them, each with the
    value those older runs behaved as (the code path they took, unchanged since). A report then
    reuses such a run where it asks for that value, instead of running it again for a key it
    never had. Only for options whose old path the new key leaves exactly as it was."""
    ingredient.lfr_added = {**getattr(ingredient, "lfr_added", {}), **keys}  # type: ignore[attr-defined]


def added_keys(ingredient: Ingredient) -> dict[str, Any]:
    """Every ``added_later`` key of ``ingredient`` and its sub-ingredients, dotted from the top of the config."""
    found = dict(getattr(ingredient, "lfr_added", {}))
    for sub in ingredient.ingredients:
        found.update({f"{sub.path}.{key}": value for key, value in added_keys(sub).items()})
    return found


def refuse_unknown(config: Mapping[str, Any], known: set[str], path: str = "") -> None:
    """A ``ConfigError`` for the first key of ``config`` that ``known`` (dotted keys) lacks,
    naming the keys known at its level. A known key's value is not looked into (a mapping
    such as ``encoder_config`` is one value)."""
    for key, value in config.items():
        dotted = f"{path}{key}"
        if dotted in known:
            continue
        if isinstance(value, Mapping) and any(k.startswith(dotted + ".") for k in known):
            refuse_unknown(value, known, dotted + ".")
            continue
        level = sorted({k[len(path) :].split(".")[0] for k in known if k.startswith(path)})
        where = f"{path[:-1]}'s keys" if path else "keys"
        raise ConfigError(f"unknown config key {dotted} (={value!r}); {where}: {', '.join(level)}")

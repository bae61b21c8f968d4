"""Property-based: every key of every experiment refuses wrong types, out-of-range, empty and
huge values in one line before a run exists, and unknown keys name the known ones.

The experiments are configured in-process the way Sacred starts a run (``create_run``,
which runs the config hooks and nothing else), so that hundreds of values take seconds;
a few subprocess cases check that the command line shows the same line, exit status 1,
no traceback and no run in the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_experiment import _encoder_run

from lfr_report.errors import LfrError
from lfr_report.registry import EXPERIMENTS
from lfr_report.running.runner import expected_config, load_experiment
from lfr_report.tracking.store import flatten_config

REPO = Path(__file__).resolve().parents[1]

# Values no key accepts: wrong types, empties, out of any range, beyond 64 bits, not finite.
BAD = st.one_of(
    st.sampled_from(["", " ", "abc", "1e400", "x" * 5000, [], [None], [[]], float("nan"), float("inf"),
                     float("-inf")]),
    st.integers(min_value=2**63, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=-(2**63)),
)  # fmt: skip
KEY = st.from_regex(r"[a-z][a-z_]{0,12}(\.[a-z][a-z_]{0,12})?", fullmatch=True)


def _base(name: str, isolated: Path) -> dict:
    """Updates that make ``name``'s smoke config valid (downstream and finetune need an encoder run)."""
    return {"encoder_run": _encoder_run(isolated)} if name in ("downstream", "finetune") else {}


def _refused(ex, updates: dict) -> str:
    with pytest.raises(LfrError) as caught:
        expected_config(ex, ["smoke"], updates)
    message = str(caught.value)
    assert "\n" not in message and message, message
    return message


@pytest.mark.parametrize("name", EXPERIMENTS)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_key_refuses_bad_values_in_one_line(isolated, name, data):
    ex = load_experiment(name)
    base = _base(name, isolated)
    keys = sorted(flatten_config(expected_config(ex, ["smoke"], base)))
    assert len(keys) >= 10, keys
    for key in keys:
        value = data.draw(BAD, label=key)
        message = _refused(ex, {**base, key: value})
        assert message.startswith(f"{key} must be "), (key, value, message)


@pytest.mark.parametrize("name", EXPERIMENTS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEY)
def test_an_unknown_key_names_the_known_ones(isolated, name, key):
    ex = load_experiment(name)
    base = _base(name, isolated)
    nested = expected_config(ex, ["smoke"], base)
    config = flatten_config(nested)
    if key in config or any(k.startswith(key + ".") for k in config) or key.split(".")[0] in config:
        return  # a key that exists, or a sub-key of a plain value (Sacred's own error)
    message = _refused(ex, {**base, key: 3})
    top = key.split(".")[0]
    inside = f"{top}.name" in config or f"{top}.epochs" in config or f"{top}.flip_p" in config  # an ingredient
    unknown = key if inside else top
    assert message.startswith(f"unknown config key {unknown} (="), message
    known = sorted(nested[top] if inside else nested)
    assert message.endswith(", ".join(known)), message


@pytest.mark.parametrize(
    ("script", "update", "expected"),
    [
        ("vicreg", "betas=abc", "betas must be a pair, each a number in [0, 1), got 'abc'"),
        ("simclr", "augment.flip_p=abc", "augment.flip_p must be a number in [0, 1], got 'abc'"),
        ("clip", "data.nosuch=3", "unknown config key data.nosuch (=3); data's keys: name, test_size, train_size"),
    ],
)
def test_the_command_line_shows_the_same_line_and_records_no_run(isolated, script, update, expected):
    done = subprocess.run([sys.executable, str(REPO / "experiments" / f"{script}.py"), "with", "smoke", update],
                          capture_output=True, text=True, cwd=isolated, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"lfr_report.errors.ConfigError: {expected}"], done.stderr
    assert [json.loads(p.read_text())["status"] for p in (isolated / "runs").glob("*/run.json")] == []

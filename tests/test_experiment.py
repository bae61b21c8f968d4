"""The experiment helpers: declared config checks, every experiment's ``data`` keys, and the
encoder runs that downstream and finetune take their data from."""

from __future__ import annotations

import pytest
from sacred import Experiment
from sacred.observers import FileStorageObserver

from lfr_report.errors import ConfigError
from lfr_report.experiment import at_least, checks, interval, list_of, one_of, optional, positive, positive_int
from lfr_report.registry import EXPERIMENTS
from lfr_report.running.runner import expected_config, load_experiment


def _checked(table, config, extra=None):
    ex = Experiment("checked", base_dir=".")
    ex.add_config(config)
    checks(ex, table, extra)
    ex.main(lambda: None)
    return expected_config(ex)


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        (positive_int, 0, "x must be a positive integer, got 0"),
        (positive_int, True, "x must be a positive integer, got True"),  # a bool is not an int
        (positive, "abc", "x must be a number > 0, got 'abc'"),
        (at_least(2, "two samples"), 1, "x must be an integer >= 2 (two samples), got 1"),
        (interval("[0, 1)"), 1.0, "x must be a number in [0, 1), got 1.0"),
        (one_of("a", "b", "c"), "d", "x must be a, b or c, got 'd'"),
        (optional(positive_int), -1, "x must be a positive integer or None, got -1"),
        (list_of(interval("(0, 1]")), [], "x must be a non-empty list, each a number in (0, 1], got []"),
    ],
)
def test_a_value_that_fails_its_check_is_one_line(rule, value, message):
    with pytest.raises(ConfigError) as failed:
        _checked({"x": rule}, {"x": value})
    assert str(failed.value) == message


def test_checks_pass_good_values_reach_into_dicts_and_run_the_cross_key_check():
    table = {"x": interval("(0, 1]"), "sub.n": optional(positive_int), "xs": list_of(one_of("a", "b"))}
    assert _checked(table, {"x": 1.0, "sub": {"n": None}, "xs": ["a", "b"]})["x"] == 1.0
    with pytest.raises(ConfigError, match=r"sub\.n must be a positive integer or None, got 'two'"):
        _checked(table, {"x": 0.5, "sub": {"n": "two"}, "xs": ["a"]})

    def extra(config):
        raise ConfigError("extra ran")

    with pytest.raises(ConfigError, match="extra ran"):
        _checked(table, {"x": 0.5, "sub": {"n": 3}, "xs": ["a"]}, extra)


def test_every_experiment_has_the_data_keys_and_a_default_named_config():
    assert len(EXPERIMENTS) == 10  # every experiment the registry names is loaded below, pretrain and methods too
    for name in EXPERIMENTS:
        ex = load_experiment(name)
        assert "default" in ex.named_configs and {"smoke", "full", "rehearsal"} <= set(ex.named_configs), name
        if name not in ("downstream", "finetune"):  # those two take their data from their encoder's run
            assert set(expected_config(ex, ["default"])["data"]) == {"name", "train_size", "test_size"}, name
    defaults = {name: expected_config(load_experiment(name), ["default"])["data"]
                for name in ("vicreg", "simclr", "eigenmaps", "autoencoder", "clip", "distill")}  # fmt: skip
    assert defaults["vicreg"] == {"name": "fashion_mnist", "train_size": None, "test_size": None}
    assert defaults["clip"] == {"name": "fashion_mnist", "train_size": 20000, "test_size": None}
    assert defaults["distill"] == {"name": "mnist", "train_size": 10000, "test_size": None}  # the course's setting
    assert expected_config(load_experiment("distill"), ["smoke"], {"second_task": "digits"})["second_task"] == "digits"
    with pytest.raises(ConfigError, match=r"second_task must be a registered dataset .* or None, got .nope."):
        expected_config(load_experiment("distill"), ["smoke"], {"second_task": "nope"})
    with pytest.raises(ConfigError, match=r"data\.train_size must be None here"):
        expected_config(load_experiment("autoencoder"), ["smoke"], {"data.train_size": 100})


def _encoder_run(isolated, fail: bool = False) -> str:
    """A COMPLETED (or FAILED) run with the config keys an encoder's run has."""
    ex = Experiment("encoder", base_dir=".")
    ex.add_config(seed=0, transfer="digits", data={"name": "synthetic", "train_size": 512, "test_size": 256})

    @ex.main
    def main():
        if fail:
            raise RuntimeError("failed on purpose")

    ex.observers.append(FileStorageObserver(str(isolated / "runs")))
    try:
        return str(ex.run(options={"--loglevel": "ERROR"})._id)
    except RuntimeError:
        return sorted(p.name for p in (isolated / "runs").iterdir() if p.name.isdigit())[-1]


def test_downstream_and_finetune_take_their_data_from_the_encoder_run(isolated):
    run_id = _encoder_run(isolated)
    downstream = expected_config(load_experiment("downstream"), ["smoke"], {"task": "probe", "encoder_run": run_id})
    assert downstream["data"] == {"name": "synthetic", "train_size": 512, "test_size": 256}
    with pytest.raises(ConfigError, match="data is the encoder's"):
        expected_config(load_experiment("downstream"), ["smoke"], {"encoder_run": run_id, "data.name": "mnist"})
    finetune = load_experiment("finetune")
    assert expected_config(finetune, ["smoke"], {"encoder_run": run_id})["data"] == {
        "name": "digits", "train_size": 512, "test_size": 256}  # fmt: skip
    assert expected_config(finetune, [], {"encoder_run": run_id, "data.name": "mnist"})["data"]["name"] == "mnist"


def test_an_encoder_run_that_did_not_complete_is_one_line(isolated):
    run_id = _encoder_run(isolated, fail=True)
    for name in ("downstream", "finetune"):
        with pytest.raises(ConfigError, match=f"run {run_id} is FAILED, not COMPLETED"):
            expected_config(load_experiment(name), ["smoke"], {"encoder_run": run_id})

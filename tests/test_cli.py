"""The `lfr` command line: its help, data listing, run listing and one-line errors."""

from __future__ import annotations

import argparse
import shutil

import pytest

from lfr_report import cli
from lfr_report.tracking import store as store_module


def _commands(parser, path=()):
    """Every (sub)command of ``parser`` with the words that reach it: ``((), lfr), (("report",), ...), ...``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_help_describes_every_command_and_every_argument(capsys):
    commands = list(_commands(cli.parser()))
    assert {path for path, _ in commands} == {(), ("report",), ("data",), ("runs",), ("runs", "show"),
                                               ("runs", "copy")}  # fmt: skip
    for path, parser in commands:
        with pytest.raises(SystemExit) as done:
            cli.main([*path, "--help"])
        assert done.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):  # each subcommand listed with what it does
                for choice in action._choices_actions:
                    assert choice.help and f"{choice.dest} {' '.join(choice.help.split())[:40]}" in out, choice.dest
                continue
            assert action.help, f"`lfr {' '.join(path)}` argument {action.dest} has no help"
            assert " ".join(action.help.split())[:40] in out, (path, action.dest)
            assert all(option in out for option in action.option_strings), (path, action.option_strings)


def test_data_list_shows_present_and_missing(capsys):
    assert cli.main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic      1x28x28   present: 2,048 train / 512 test" in out  # each split's size
    cifar = next(line for line in out.splitlines() if line.startswith("cifar10"))
    assert "missing" in cifar and "get it with: python -m lfr_report data get cifar10" in cifar


def test_runs_lists_the_store(smoke_runs, isolated, capsys):
    assert cli.main(["runs"]) == 0
    assert "no matching runs in" in capsys.readouterr().out
    shutil.rmtree(isolated / "runs")
    shutil.copytree(smoke_runs, isolated / "runs")
    assert cli.main(["runs", "--experiment", "vicreg", "--status", "COMPLETED"]) == 0
    out = capsys.readouterr().out
    assert "vicreg" in out and "COMPLETED" in out and "probe_test_accuracy=" in out


def test_report_with_unreachable_store_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(store_module, "MONGO_TIMEOUT_MS", 200)
    monkeypatch.setenv("LFR_MONGO_URL", "mongodb://127.0.0.1:9/lfr")
    assert cli.main(["report", "vicreg", "--scale", "smoke"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach MongoDB") and "\n" not in err


def test_report_builds_from_the_store(smoke_store, isolated, capsys):
    out = isolated / "r.pdf"
    assert cli.main(["report", "vicreg", "--scale", "smoke", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert "report written" in capsys.readouterr().out


def test_report_out_may_name_a_folder(smoke_store, isolated, capsys):
    folder = isolated / "pdfs"
    folder.mkdir()
    assert cli.main(["report", "vicreg", "--scale", "smoke", "--out", str(folder)]) == 0
    assert (folder / "vicreg.pdf").read_bytes().startswith(b"%PDF")
    assert cli.main(["report", "vicreg", "autoencoder", "--out", str(isolated / "one.pdf")]) == 1
    err = capsys.readouterr().err.strip()
    assert "is one file but 2 reports were asked for" in err and "\n" not in err


def test_unknown_status_and_missing_source_folder_are_errors(isolated, capsys):
    assert cli.main(["runs", "--status", "NOSUCH"]) == 1
    assert "unknown status 'NOSUCH'; statuses: COMPLETED" in capsys.readouterr().err
    assert cli.main(["runs", "copy", "--from", str(isolated / "nowhere"), "--to", str(isolated / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert "nowhere: no such folder of runs" in err and "\n" not in err
    assert not (isolated / "b").exists()


def test_report_names_come_from_the_registry(capsys):
    from lfr_report.registry import REPORTS

    with pytest.raises(SystemExit):
        cli.main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in REPORTS) and "or all" in out
    with pytest.raises(SystemExit) as done:
        cli.main(["report", "nosuch"])
    assert done.value.code == 2

"""Every experiment command the README and the manual show (and the experiments' own
docstrings, which ``--help`` prints) is a command that runs: its named configs exist and
its keys and values pass the experiment's config checks. Nothing is trained: each command
goes as far as Sacred's config (``expected_config``), where an unknown key, a misspelt
named config or an impossible value stops a run.

The placeholders the docs use for a run id or a choice made from runs (``<VICReg run>``,
``<best solver>``) are read as a sample value; commands with others (``...``, ``$VAR``) are
left out, and counted.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from sacred import Experiment
from sacred.arg_parser import get_config_updates
from sacred.observers import FileStorageObserver

from lfr_report.registry import EXPERIMENTS, REPORTS, report
from lfr_report.report.run_table import BEGIN, END, page_of, updated
from lfr_report.running.runner import expected_config, load_experiment

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "experiments").glob("*.py"))]
SCRIPT = re.compile(r"(?<![\w/.-])(experiments/)?([a-z_]+)\.py\b([^`|]*)")
SAMPLES = {
    "<best solver>": "value",
    "<best of penalty and value>": "value",
    "<VICReg run>": "1",
    "<run>": "1",
    "<run id>": "1",
    "<id>": "1",
}
RUN_OF = re.compile(r"<\w+ run>|<from \w+>")  # the id of the run a report declared as KEY (run tables, job lists)
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\$|…|\bNAME\b|\bID\b")
# Sacred's command-line words that are not config: commands and observer options (with their argument)
COMMANDS = {"print_config", "print_named_configs", "print_dependencies", "save_config", "help", "main"}
OPTIONS_WITH_VALUE = {"-F", "--file_storage", "-m", "--mongo_db", "-c", "--comment", "-n", "--name"}


def code_fragments(path: Path) -> list[tuple[int, str, bool]]:
    """(line, text, in a code block) of every code span and code-block line (a Python file: the
    lines of its docstrings that show a command)."""
    text = path.read_text()
    if path.suffix == ".py":
        return [(i, line, True) for i, line in enumerate(text.splitlines(), 1) if ".py with" in line]
    fragments, fenced = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            fragments.append((i, re.sub(r"\s#.*$", "", line), True))  # a shell comment is not an argument
        else:
            fragments += [(i, span, False) for span in re.findall(r"`([^`]+)`", line)]
    return fragments


def is_command(prefixed: bool, words: str, fenced: bool) -> bool:
    """``vicreg.py with ...`` is a command; a bare ``finetune.py`` in a sentence names a file."""
    if not words:
        return fenced or prefixed
    return words.split()[0] in ("with", "print_config", "--help", "-F", "-u", "--unobserved")


def documented_commands() -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(where, experiment, its words) for each experiment command shown, and (where, words) of those left out
    for a placeholder no sample stands for."""
    found, placeholders = [], []
    for path in SOURCES:
        for line, fragment, fenced in code_fragments(path):
            for prefix, name, words in SCRIPT.findall(fragment):
                words = words.split(" # ")[0].strip().rstrip(".,;:)")
                if name not in EXPERIMENTS or not is_command(bool(prefix), words, fenced):
                    continue
                for placeholder, sample in SAMPLES.items():
                    words = words.replace(placeholder, sample)
                words = RUN_OF.sub("1", words)
                if PLACEHOLDER.search(words):
                    placeholders.append((f"{path.relative_to(REPO)}:{line}", words))
                    continue
                found.append((f"{path.relative_to(REPO)}:{line}", name, words))
    return sorted(set(found)), placeholders


COMMANDS_SHOWN, WITH_PLACEHOLDERS = documented_commands()


def parse(words: str) -> tuple[list[str], dict]:
    """Named configs and config updates of ``with ...`` as Sacred's command line reads them."""
    tokens = shlex.split(words)
    kept, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in OPTIONS_WITH_VALUE:
            skip = True
        elif not token.startswith("-") and token not in COMMANDS:
            kept.append(token)
    if kept and kept[0] == "with":
        kept = kept[1:]
    updates, named = get_config_updates(kept)
    return named, updates


@pytest.fixture(scope="module")
def earlier_runs(tmp_path_factory) -> Path:
    """A store whose runs 1-60 are COMPLETED encoder runs on Fashion-MNIST (half of them with
    mu=0.0), for the commands that name an earlier run (``encoder_run=1``, ``neighbours_from=7``)."""
    folder = tmp_path_factory.mktemp("earlier") / "runs"
    for i in range(60):
        ex = Experiment("vicreg", save_git_info=False)
        ex.add_config(
            data={"name": "fashion_mnist", "train_size": None, "test_size": None},
            mu=0.0 if i % 2 else 25.0,
            scale="default",
        )
        ex.main(lambda: None)
        ex.observers.append(FileStorageObserver(str(folder)))
        ex.run()
    return folder


@pytest.fixture(autouse=True)
def store_of_earlier_runs(earlier_runs, monkeypatch):
    monkeypatch.setenv("LFR_RUNS_DIR", str(earlier_runs))
    monkeypatch.delenv("LFR_MONGO_URL", raising=False)


def test_the_docs_show_many_commands_and_the_parser_reads_them():
    assert len(COMMANDS_SHOWN) >= 40, COMMANDS_SHOWN  # the README, the manual and the scripts' docstrings
    # Left out: few, and each for a placeholder no sample stands for (a greedier pattern would drop real commands)
    assert len(WITH_PLACEHOLDERS) <= len(COMMANDS_SHOWN) // 10, WITH_PLACEHOLDERS
    assert all(PLACEHOLDER.search(words) for _, words in WITH_PLACEHOLDERS)
    assert parse("with default no_variance mu=0 'encoder_config={\"mu\": 0.0}' -F /tmp/x") == (
        ["default", "no_variance"], {"mu": 0, "encoder_config": {"mu": 0.0}})  # fmt: skip
    assert parse("print_config with full") == (["full"], {})


def test_an_unknown_key_in_a_shown_command_fails_the_check():
    with pytest.raises(Exception, match="unknown config key tasks"):
        expected_config(load_experiment("distill"), *parse("with default value tasks='[\"mnist\"]'"))


@pytest.mark.parametrize(("where", "experiment", "words"), COMMANDS_SHOWN, ids=[c[0] for c in COMMANDS_SHOWN])
def test_each_command_the_docs_show_passes_the_config_checks(where, experiment, words):
    named, updates = parse(words)
    expected_config(load_experiment(experiment), named, updates)  # raises on an unknown key or a bad value


@pytest.mark.parametrize("name", list(REPORTS))
def test_each_report_pages_run_table_is_the_reports_declaration(name):
    page = page_of(report(name), REPO / "docs")
    text = page.read_text()
    assert text == updated(text, report(name)), f"{page.name}'s run table is stale: run `make docs-tables`"
    table = text.split(BEGIN)[1].split(END)[0]
    assert table.count("experiments/") == len(report(name).needs("default"))  # one row per declared run


def test_a_run_table_that_lost_a_run_fails_the_check():
    declared = report("vicreg")
    page = page_of(declared, REPO / "docs").read_text()
    stale = page.replace(next(line for line in page.splitlines() if "no_variance" in line) + "\n", "")
    assert stale != page and updated(stale, declared) != stale

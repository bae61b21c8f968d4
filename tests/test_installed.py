"""The package installed non-editable (what the Docker image and `pip install .` do) finds its
experiment scripts and templates outside a checkout, and a checkout keeps using its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import pdf_text

from lfr_report import resources
from lfr_report.errors import ConfigError
from lfr_report.registry import EXPERIMENTS
from lfr_report.running.runner import load_experiment

REPO = Path(__file__).resolve().parents[1]
# what a build reads: the package, the folders setup.py bundles, and the build's own files
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "lfr_report", "experiments", "templates")


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], cwd=cwd, check=True, env=_clean_env())


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the worktree on PYTHONPATH, so only the install is importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel built from a copy of the checkout (no .git, nothing built), and the folder it
    is installed into with ``pip install --no-deps --target`` (the shared venv has the rest)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
        else:
            shutil.copy2(src, source / name)
    _pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-cache-dir",
        "-w",
        str(root / "dist"),
        ".",
        cwd=source,
    )
    (wheel,) = (root / "dist").glob("lfr_report-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(root / "site"), str(wheel), cwd=root)
    return wheel, root / "site"


def test_the_wheel_carries_every_experiment_and_template(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in EXPERIMENTS:
        assert f"lfr_report/_bundled/experiments/{name}.py" in names
    for template in (REPO / "templates").iterdir():
        assert f"lfr_report/_bundled/templates/{template.name}" in names


def test_installed_lfr_builds_a_report_from_another_folder(installed, tmp_path):
    _, site = installed
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env(PYTHONPATH=str(site), LFR_RUNS_DIR=str(work / "runs"), LFR_CHECKPOINT_DIR=str(work / "ck"))
    env.pop("LFR_TEMPLATES_DIR", None)
    env.pop("LFR_EXPERIMENTS_DIR", None)
    done = subprocess.run(
        [str(site / "bin" / "lfr"), "report", "autoencoder", "--scale", "smoke"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pages, text = pdf_text(work / "reports" / "autoencoder.pdf")
    assert pages >= 2 and "smoke" in text
    runs = [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*/run.json"))]
    assert len(runs) == 3 and {r["status"] for r in runs} == {"COMPLETED"}
    # the scripts that ran are the installed copies, not the checkout's
    bundled = (site / "lfr_report" / "_bundled").resolve()
    assert {Path(r["experiment"]["base_dir"]).resolve() for r in runs} == {bundled}
    assert str(REPO) not in done.stdout + done.stderr


def test_a_checkout_uses_its_own_folders(monkeypatch, tmp_path):
    assert not resources.BUNDLED_DIR.exists()  # a checkout never holds the build's copy
    assert resources.experiments_dir() == REPO / "experiments"
    assert resources.templates_dir() == REPO / "templates"
    monkeypatch.setenv("LFR_EXPERIMENTS_DIR", str(tmp_path))
    monkeypatch.setenv("LFR_TEMPLATES_DIR", str(tmp_path / "t"))
    assert resources.experiments_dir() == tmp_path and resources.templates_dir() == tmp_path / "t"


def test_the_bundled_copy_wins_over_the_folder_beside_the_package(monkeypatch, tmp_path):
    """Installed, the checkout's place is site-packages/experiments: another distribution's, if anything."""
    (tmp_path / "experiments").mkdir()
    monkeypatch.setattr(resources, "BUNDLED_DIR", tmp_path)
    monkeypatch.delenv("LFR_EXPERIMENTS_DIR", raising=False)
    assert resources.experiments_dir() == tmp_path / "experiments"
    assert resources.templates_dir() == REPO / "templates"  # no bundled templates: the checkout's


def test_an_experiments_folder_without_the_script_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LFR_EXPERIMENTS_DIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "lfr_experiments.clip", raising=False)
    with pytest.raises(ConfigError, match=f"no experiment 'clip' in {tmp_path}; known: vicreg"):
        load_experiment("clip")

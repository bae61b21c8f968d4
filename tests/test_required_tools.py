"""In CI a test whose tool is missing fails: ``skip_or_fail`` skips only where
``$LFR_REQUIRE_TOOLS`` is unset, and ``.ci/run`` sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
from helpers import skip_or_fail

def test_needs_a_tool():
    skip_or_fail("frobnicator is not installed")
"""


def _pytest(tmp_path: Path, required: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "LFR_REQUIRE_TOOLS"}
    env["PYTHONPATH"] = str(REPO / "tests")
    if required:
        env["LFR_REQUIRE_TOOLS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip


def test_a_missing_tool_skips_on_a_workstation_and_fails_in_ci(tmp_path):
    workstation, ci = _pytest(tmp_path, required=False), _pytest(tmp_path, required=True)
    assert workstation.returncode == 0 and "1 skipped" in workstation.stdout
    assert ci.returncode == 1 and "1 failed" in ci.stdout and "frobnicator is not installed" in ci.stdout


def test_ci_sets_it_before_the_readmes_test_command():
    script = (REPO / ".ci" / "run").read_text().splitlines()
    assert script.index("export LFR_REQUIRE_TOOLS=1") < script.index("make test")

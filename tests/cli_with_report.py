"""``lfr`` with a test report registered, for tests that run the CLI in another process
(on a host of tests/two_hosts.py): ``python tests/cli_with_report.py MODULE ARGS...`` registers
``tests/MODULE.py``'s report under its ``NAME`` and runs ``lfr ARGS...``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lfr_report import cli
from lfr_report.registry import REPORTS

if __name__ == "__main__":
    REPORTS[importlib.import_module(sys.argv[1]).NAME] = sys.argv[1]
    sys.exit(cli.main(sys.argv[2:]))

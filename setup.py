"""The one build step pyproject.toml cannot declare: a built package carries copies of the
top-level ``experiments/`` and ``templates/`` folders as ``lfr_report/_bundled/``, so an
installed ``lfr`` finds its scripts and templates outside a checkout (lfr_report/resources.py).
An editable install reads the checkout's folders instead and gets no copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("experiments", "templates")  # what lfr_report/resources.py looks up


class build_py_with_bundled(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        for name in BUNDLED:
            source = here / name
            if not source.is_dir():
                raise SystemExit(f"error: {source} is missing; build the package from a full checkout of lfr")
            target = Path(self.build_lib, "lfr_report", "_bundled", name)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_bundled})

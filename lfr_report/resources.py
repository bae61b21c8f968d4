"""Where lfr finds its experiment scripts and report templates.

In a source checkout (and an editable install) they are the top-level ``experiments/`` and
``templates/`` folders beside the package. An installed package (``pip install .``, the
wheel, the Docker image's ``lfr``) has no checkout around it, so the build copies both
folders into the package as ``lfr_report/_bundled/`` (``setup.py``); that copy is what an
installed ``lfr`` uses, whatever folder it is run from. ``$LFR_EXPERIMENTS_DIR`` and
``$LFR_TEMPLATES_DIR`` override either, for example to point an installed ``lfr`` at a
checkout's edited scripts.

The bundled copy is looked for first: next to an installed package, the checkout's place
is ``site-packages/experiments``, which is another distribution's folder if it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout, when the package is imported from one
BUNDLED_DIR = PACKAGE_DIR / "_bundled"  # only in a built (non-editable) install


def _resource_dir(name: str, variable: str) -> Path:
    if os.environ.get(variable):
        return Path(os.environ[variable])
    bundled = BUNDLED_DIR / name
    return bundled if bundled.is_dir() else REPO_ROOT / name


def experiments_dir() -> Path:
    """The folder of the experiment scripts (``vicreg.py``, ...); ``$LFR_EXPERIMENTS_DIR`` overrides it."""
    return _resource_dir("experiments", "LFR_EXPERIMENTS_DIR")


def templates_dir() -> Path:
    """The folder of the report templates and their CSS; ``$LFR_TEMPLATES_DIR`` overrides it."""
    return _resource_dir("templates", "LFR_TEMPLATES_DIR")

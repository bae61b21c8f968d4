"""User-facing errors: one line that says what is wrong and how to fix it.

They subclass Sacred's ``SacredError`` with ``print_traceback=False`` so that an
experiment started from the command line prints just that line and exits 1; the
``lfr`` command line catches them the same way.
"""

from sacred.utils import SacredError


class LfrError(SacredError):
    """An error caused by the user's input or environment, not by a bug."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_traceback=False)


class DataError(LfrError):
    """A dataset is missing, corrupt or unknown."""


class ConfigError(LfrError):
    """A configuration value is impossible."""


class StoreError(LfrError):
    """The run store cannot be reached or does not hold what was asked for."""


class Diverged(LfrError):
    """Training produced a non-finite loss, term or parameter: the run stops as FAILED."""


class Busy(LfrError):
    """Another process is running the same configuration: this run would share its checkpoint."""

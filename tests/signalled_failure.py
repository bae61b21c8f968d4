"""An experiment whose run fails and is sent SIGTERM while its store writes the FAILED status
(what torchrun does to rank 0 when another rank failed), for tests/test_store.py."""

from __future__ import annotations

import os
import signal
import sys
import time

from sacred.observers import FileStorageObserver

from lfr_report.experiment import new_experiment
from lfr_report.tracking import observers


class SignalledWhileWriting(FileStorageObserver):
    def save_json(self, obj, filename):
        if filename == "run.json" and obj.get("status") == "FAILED":
            os.kill(os.getpid(), signal.SIGTERM)  # arrives now, in the middle of the write
            time.sleep(0.5)
        super().save_json(obj, filename)


ex = new_experiment("signalled_failure", data=False)


@ex.main
def main():
    raise RuntimeError("planted failure")


if __name__ == "__main__":
    folder = sys.argv.pop()
    observers.default_observer = lambda: SignalledWhileWriting(folder)  # the run's one observer
    observers.run_commandline(ex)

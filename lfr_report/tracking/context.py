"""What a run records about where and how it ran: seed, device, git commit."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path

import numpy as np
import threadpoolctl
import torch

from lfr_report import distributed
from lfr_report.errors import ConfigError
from lfr_report.resources import REPO_ROOT
from lfr_report.tracking import lock


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is a ``ConfigError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is visible; use device=cpu or device=auto")
    return device


def use_threads(threads: int) -> None:
    """Compute with ``threads`` threads in torch and in NumPy's BLAS from here on: a run's CPU
    results depend on its thread count, never on how many cores the machine has."""
    torch.set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)


def describe_device(device: torch.device) -> str:
    """A human description: the GPU's name, or the CPU and torch's thread count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def git_commit(path: Path = REPO_ROOT) -> str | None:
    """``HEAD`` of the repository holding ``path`` (``+dirty`` if tracked files changed), or None."""
    if os.environ.get("LFR_GIT_COMMIT"):  # set in images built without .git
        return os.environ["LFR_GIT_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def begin_run(run, seed: int, device: str) -> torch.device:
    """What every experiment does first: seed Python, NumPy and torch, pick the device (on the
    CPU, compute with the config's ``threads``: ``use_threads``), and
    record in the run's info the device, the git commit and the torch version; from here on
    the data sets read are this run's (``lfr_report.data.identity``). It takes the
    configuration's lock (``tracking.lock.for_config``; rank 0 alone under torchrun), so a
    second process running the same configuration, with or without checkpoints, is refused
    in one line naming the first.

    Under torchrun the process joins the others (``lfr_report.distributed.start``: its own
    GPU) and every rank takes rank 0's seed; the info records ``world_size`` and ``hosts``, each rank's host name."""
    from lfr_report.data import identity

    identity.begin_reads()  # the data sets this run reads go into its record and checkpoint key
    resolved = resolve_device(device)
    if distributed.launched():
        resolved = distributed.start(resolved)
        seed = int(distributed.object_from_rank0(seed))
        run.info["world_size"] = distributed.size()
        run.info["hosts"] = distributed.objects_of_all_ranks(socket.gethostname())  # by rank
    if distributed.is_main():
        lock.acquire(lock.for_config(run.experiment_info["name"], run.config))
    seed_everything(seed)
    if resolved.type == "cpu":
        use_threads(int(run.config.get("threads", 1)))
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels once
    run.info.update(device=describe_device(resolved), git_commit=git_commit(), torch=str(torch.__version__))
    return resolved

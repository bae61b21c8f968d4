"""One run on several processes: what ``torchrun --nproc_per_node=N experiments/X.py ...`` needs.

torchrun starts N copies of the script with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous address in their environment. Outside torchrun every helper here is the
identity (rank 0 of 1), so the single-process path is unchanged. Under torchrun:

* ``start`` joins the process group (NCCL on GPUs, gloo on CPUs) and picks the rank's GPU;
* ``train_loop`` gives each rank its share of every global batch and logs the terms
  averaged over the ranks, i.e. the global batch's values (``mean_over_ranks``);
* ``gather_batch`` is the all-gather for the terms that need the whole batch (VICReg's
  variance and covariance, NT-Xent's negatives): its backward *sums* the gradient over
  the ranks and returns this rank's slice. Each rank computes the same global term, so
  its gradient with respect to rank r's projections arrives once from every rank; DDP then
  averages the parameter gradients, and the sum over ranks cancels that mean. Without the
  all-reduce each rank keeps only its own rank's contribution and the gradient is wrong
  (lightly issue #1528; the idea is that of facebookresearch/vicreg's ``FullGatherLayer``);
* ``wrap`` puts a module in DistributedDataParallel, with SyncBatchNorm on CUDA (torch's
  SyncBatchNorm refuses CPU tensors, so on CPUs each rank's batch norms see its share);
* only rank 0 records the run (``observers.run_commandline`` makes the other ranks
  unobserved) and writes checkpoints; a rank that fails leaves its error text in the
  rendezvous store (``report_failure``) and rank 0's observers record the run FAILED with
  that text (``FailureFromAnyRank``), not with the "connection closed" rank 0 itself sees.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lfr_report.errors import ConfigError

DISTRIBUTED_EXPERIMENTS = ("vicreg.py", "simclr.py", "finetune.py")
_FAILURE_KEY = "lfr_failure_rank_{}"


def launched() -> bool:
    """True in a process torchrun started (it sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_size() -> int:
    """The number of processes torchrun started (1 outside torchrun), before ``start``."""
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def launched_rank() -> int:
    """This process's rank from torchrun's environment (0 outside torchrun), before ``start``."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def active() -> bool:
    """True once ``start`` has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the rank that records the run and writes checkpoints (and outside torchrun)."""
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group, once; returns the device this rank trains on: on a
    CUDA ``device`` without an index, GPU ``LOCAL_RANK`` (one GPU per process)."""
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def check_launch(script: str, distributed: bool, batch_size: int | None) -> None:
    """The one-line errors of a torchrun launch, raised before a run is recorded: a script
    that does not train across processes, or a global batch that does not divide among them."""
    if not launched():
        return
    if not distributed:
        raise ConfigError(f"{script} is not distributed: run it with python, not torchrun "
                          f"(torchrun works for {', '.join(DISTRIBUTED_EXPERIMENTS)})")  # fmt: skip
    world = launched_size()
    if batch_size is not None and batch_size % world:
        raise ConfigError(f"batch_size={batch_size} (the global batch) does not divide among {world} processes: "
                          f"use a multiple of {world}")  # fmt: skip


# --- collectives (identities outside torchrun) -------------------------------------------


def _on_backend(t: Tensor) -> Tensor:
    """``t`` on a device the backend reduces on: NCCL only reduces CUDA tensors."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.cuda()
    return t


def mean_over_ranks(t: Tensor) -> Tensor:
    """The mean of ``t`` over the ranks (a copy; ``t`` itself unchanged)."""
    if size() == 1:
        return t
    out = _on_backend(t.detach().clone())
    dist.all_reduce(out)
    return (out / size()).to(t.device)


def from_rank0(t: Tensor) -> Tensor:
    """Rank 0's ``t`` on every rank (a copy)."""
    if size() == 1:
        return t
    out = _on_backend(t.clone())
    dist.broadcast(out, 0)
    return out.to(t.device)


def object_from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def objects_of_all_ranks(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if size() == 1:
        return [value]
    out: list[Any] = [None] * size()
    dist.all_gather_object(out, value)
    return out


class _GatherBatch(torch.autograd.Function):
    """All-gather along the batch whose backward sums the gradients over ranks and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = len(grad) // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def gather_batch(x: Tensor) -> Tensor:
    """Every rank's ``x`` (equal shapes) concatenated in rank order; see the module docstring."""
    return _GatherBatch.apply(x) if size() > 1 else x


def share(length: int) -> slice:
    """This rank's part of ``length`` items (contiguous, in rank order)."""
    return slice(length * rank() // size(), length * (rank() + 1) // size())


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` for training across the ranks: DistributedDataParallel (gradients averaged
    in backward, buffers broadcast from rank 0 at each forward), its batch norms synchronised
    on CUDA. The batch norms are replaced in place, so callers' references to submodules see
    them. Outside torchrun, ``module`` itself."""
    if size() == 1:
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(module)


# --- failures on any rank -------------------------------------------------------------------


def _store() -> dist.Store | None:
    try:
        return dist.distributed_c10d._get_default_store() if active() else None
    except (RuntimeError, ValueError):
        return None


def report_failure(trace: Sequence[str]) -> None:
    """Leave this rank's error text where rank 0 finds it (the rendezvous store torchrun holds)."""
    store = _store()
    if store is not None and rank() != 0:
        where = f"rank {rank()} of {size()} failed on {socket.gethostname()}"
        store.set(_FAILURE_KEY.format(rank()), f"{where}:\n" + "".join(trace))


def failure_of_another_rank(wait_s: float = 5.0) -> list[str] | None:
    """The error text a failed rank left (the lowest such rank), waiting up to ``wait_s`` for one."""
    store = _store()
    if store is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            for other in range(1, size()):
                key = _FAILURE_KEY.format(other)
                if store.check([key]):
                    return [store.get(key).decode()]
        except RuntimeError:  # the store went away with torchrun
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


class FailureFromAnyRank:
    """Rank 0's observer, wrapped: when rank 0 fails or is stopped because another rank
    failed (a closed connection, torchrun's SIGTERM), the run is recorded FAILED with that
    rank's error text. Everything else goes to ``observer`` unchanged."""

    def __init__(self, observer: Any) -> None:
        self.observer = observer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.observer, name)

    def failed_event(self, fail_time, fail_trace):
        return self.observer.failed_event(fail_time=fail_time, fail_trace=failure_of_another_rank() or fail_trace)

    def interrupted_event(self, interrupt_time, status):
        other = failure_of_another_rank()
        if other is not None:
            return self.observer.failed_event(fail_time=interrupt_time, fail_trace=other)
        return self.observer.interrupted_event(interrupt_time=interrupt_time, status=status)


def end() -> bool:
    """Leave the process group, all ranks together, once training is over; True on rank 0
    (and outside torchrun), which goes on alone: what follows (probes, embeddings, saving)
    runs on one process, as without torchrun."""
    if not active():
        return True
    was = dist.get_rank()
    dist.barrier()
    dist.destroy_process_group()
    return was == 0

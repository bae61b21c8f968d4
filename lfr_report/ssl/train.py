"""The one training loop of the package, and ``fit``, its two-view self-supervised use
(VICReg, its ablations, SimCLR).

``train_loop`` runs epochs over a training set in an order drawn from a generator: each
batch goes to a ``step`` that returns the objective's terms (``loss``, the one optimised,
and any others), the loop steps the optimiser (and a learning-rate schedule) and logs every
term as ``train_<term>``; after each epoch an optional ``evaluate`` gives the terms logged
as ``test_<term>``. Loops differ only in their ``step`` (the objective) and ``evaluate``:
``fit`` here, ``train_autoencoder`` (``lfr_report.ssl.autoencoder``), ``train_clip``
(``lfr_report.ssl.clip``), ``fine_tune`` (``lfr_report.evaluate.finetune``) and
``linear_probe`` (``lfr_report.evaluate.linear_probe``).

Terms are logged either per batch (``log_every``: the loop keeps them on the device and
hands them to ``log`` in blocks, so there is no host synchronisation per step; the step of
a value is the optimiser step) or as each epoch's mean (``log_every=None``; the step is the
epoch's number, from 1). After every epoch the loop writes a checkpoint (the modules'
weights, optimiser, schedule, the loop's generator and the global random states, the
metrics logged so far); a loop started with an existing checkpoint resumes after its last
epoch and replays the logged metrics first, so the finished run holds the whole curve and
ends with the weights and metrics of an uninterrupted one.

Each step of ``fit``: make two views of a batch, project each with
``projector(encoder(view))`` (two forward passes, as Algorithm 1 of the exercise writes it,
so BatchNorm sees each view on its own) and compute the objective.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lfr_report import distributed
from lfr_report.data import identity
from lfr_report.errors import ConfigError, Diverged, StoreError
from lfr_report.names import test_metric, train_metric
from lfr_report.tracking import lock
from lfr_report.tracking.observers import interrupts_deferred
from lfr_report.tracking.store import checkpoints_dir

# (batch uint8 on device, its indices in the training set, generator) -> two float views
ViewMaker = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]
Objective = Callable[[Tensor, Tensor], NamedTuple]
LogFn = Callable[[str, float, int], None]
# (the batch: the training tensor(s) at its indices, on the device; the indices) -> the
# objective's terms, name -> 0-d tensor with ``loss`` among them: a mapping or a NamedTuple
Step = Callable[[Any, Tensor], Any]

_RESERVED = ("epoch", "optimizer", "scheduler", "generator", "rng", "history", "last_train", "last_test", "world_size",
             "ranks", "streams")  # fmt: skip


@dataclass
class LoopResult:
    epochs_run: int  # epochs trained in this call (0 when a checkpoint already held them all)
    resumed_from_epoch: int  # 0 for a fresh start
    steps: int  # optimiser steps in total
    last_train_terms: dict[str, float]  # the last epoch's means (per-batch logging: its last batch)
    last_test_terms: dict[str, float]


def _check_finite(names: tuple[str, ...], values: list[float], epoch: int, where: str) -> None:
    """Stop at the first non-finite term of a batch (or of an epoch's mean), naming it."""
    for name, value in zip(names, values, strict=True):
        if not math.isfinite(value):
            raise Diverged(f"training diverged at epoch {epoch}, {where}: {name} became {value} "
                           "(a learning rate too high?)")  # fmt: skip


def _over_ranks(sums: Tensor, weight: int) -> tuple[Tensor, float]:
    """An epoch's summed terms and their weight, summed over the ranks (themselves outside torchrun)."""
    if distributed.size() == 1:
        return sums, weight
    total = distributed.mean_over_ranks(torch.cat([sums, sums.new_tensor([weight])])) * distributed.size()
    return total[:-1], total[-1].item()


def train_loop(
    step: Step,
    data: Tensor | tuple[Tensor, ...],
    *,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    log: LogFn | None = None,
    evaluate: Callable[[int], Mapping[str, float]] | None = None,
    checkpoint: Path | None = None,
    log_every: int | None = 20,
    epoch_mean: Literal["images", "batches"] = "images",
    drop_last: bool = True,
    max_steps: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    train_mode: Callable[[], None] | None = None,
    save_every_s: float = 0.0,
    progress: bool = True,
    streams: Mapping[str, torch.Generator] | None = None,
) -> LoopResult:
    """Train ``modules`` on ``step`` for ``epochs`` passes over ``data``; see the module docstring.

    ``data`` is a tensor (or a tuple of tensors of one length, indexed together) on the CPU
    or on ``device``; each epoch draws ``torch.randperm`` from ``generator`` and hands
    ``step`` the batch (moved to ``device``) and its indices. ``drop_last`` drops each
    epoch's last incomplete batch. ``evaluate(epoch)`` (epoch counted from 1) gives the
    test terms after each epoch. ``log_every=None`` logs each epoch's mean instead of
    every batch: weighted by the batch's images (``epoch_mean="images"``, divided in
    float64) or each batch alike (``"batches"``, in float32). ``max_steps`` stops the last
    epoch early once that many optimiser steps are taken; ``scheduler`` steps after every
    optimiser step; ``train_mode`` puts the modules in training mode at each epoch's start
    (default: ``.train()`` on each). ``modules`` are what the checkpoint saves, by name; it
    is written at the end of every epoch, or with ``save_every_s`` of the first epoch to end
    that many seconds after the last write (short epochs), and always after the last one.
    ``streams`` are other generators ``step`` draws from (noise, prior samples): saved with
    the checkpoint and restored from it, so a resumed run draws what an uninterrupted one would.

    Under torchrun (``lfr_report.distributed``) ``batch_size`` is the global batch: each
    rank takes its share of every batch of one order (drawn by rank 0), ``step`` must
    reduce across ranks itself (a DDP-wrapped model does), the logged terms are the means
    over the ranks, and each rank draws its augmentations from its own stream (``generator``
    re-seeded with ``seed + rank``). Rank 0 writes the checkpoint, with every rank's random
    states; it resumes with the same number of processes only.
    """
    if reserved := set(modules) & set(_RESERVED):
        raise ValueError(f"module names {sorted(reserved)} are taken by the checkpoint's own entries")
    tensors = data if isinstance(data, tuple) else (data,)
    n = len(tensors[0])
    rank, ranks = distributed.rank(), distributed.size()
    if batch_size % ranks:
        raise ConfigError(f"batch_size={batch_size} (the global batch) does not divide among {ranks} processes")
    if drop_last and n < batch_size:
        raise ValueError(f"{n} training images is fewer than one batch of {batch_size}")
    steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    log = log or (lambda name, value, at: None)
    history: list[tuple[str, float, int]] = []

    def record(name: str, value: float, at: int) -> None:
        history.append((name, value, at))
        log(name, value, at)

    start_epoch, train_terms, test_terms = 0, {}, {}
    if rank > 0:
        generator.manual_seed(generator.initial_seed() + rank)
    state = load_checkpoint(checkpoint)
    if state is not None:
        if state.get("world_size", 1) != ranks:
            raise ConfigError(f"checkpoint {checkpoint} was written by {state.get('world_size', 1)} processes, not "
                              f"{ranks}: resume it with torchrun --nproc_per_node={state.get('world_size', 1)}, "
                              "or delete it to start over")  # fmt: skip
        state.update(state.get("ranks", [{}])[rank])  # this rank's own random states
        for name, module in modules.items():
            module.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        for name, stream in (streams or {}).items():
            if name in state.get("streams", {}):  # checkpoints written before streams were saved lack them
                stream.set_state(state["streams"][name])
        if "rng" in state:  # checkpoints of fit before the loop was shared lack it
            set_rng_state(state["rng"], device)
        start_epoch = state["epoch"]
        train_terms, test_terms = state.get("last_train", {}), state.get("last_test", {})
        for name, value, at in state["history"]:
            record(name, value, at)

    def set_train_mode() -> None:
        if train_mode is not None:
            train_mode()
        else:
            for module in modules.values():
                module.train()

    saved_at = time.monotonic()
    bar = tqdm(total=total_steps, initial=min(start_epoch * steps_per_epoch, total_steps), disable=not progress,
               leave=False)  # fmt: skip
    for epoch in range(start_epoch, epochs):
        first_step = epoch * steps_per_epoch
        if first_step >= total_steps:
            break
        bar.set_description(f"epoch {epoch + 1}/{epochs}")
        set_train_mode()
        order = distributed.from_rank0(torch.randperm(n, generator=generator, device=generator.device))
        on_device = {t.device: order.to(t.device) for t in tensors}  # moved once an epoch, not once a batch
        names: tuple[str, ...] = ()
        pending: list[Tensor] = []  # per-batch logging: the terms not yet handed to log
        sums: Tensor | None = None  # epoch means: the terms summed (times the batch's images)
        weight, batches, done = 0, 0, first_step
        for i in range(steps_per_epoch):
            if done == total_steps:
                break
            whole = distributed.share(min(batch_size, n - i * batch_size))  # this rank's share of the batch
            part = slice(i * batch_size + whole.start, i * batch_size + whole.stop)
            index = order[part]
            batch = tuple(t[on_device[t.device][part]].to(device, non_blocking=True) for t in tensors)
            terms = step(batch if isinstance(data, tuple) else batch[0], index)
            terms = terms._asdict() if hasattr(terms, "_asdict") else terms
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            done += 1
            bar.update()
            names = tuple(terms)
            if log_every is not None:
                pending.append(torch.stack([t.detach().float() for t in terms.values()]))
                if len(pending) == log_every or i == steps_per_epoch - 1 or done == total_steps:
                    values = distributed.mean_over_ranks(torch.stack(pending)).cpu().tolist()
                    for offset, row in enumerate(values):
                        _check_finite(names, row, epoch + 1, f"step {done - len(pending) + offset + 1}")
                        for name, value in zip(names, row, strict=True):
                            record(train_metric(name), value, done - len(pending) + offset)
                    train_terms = dict(zip(names, values[-1], strict=True))
                    bar.set_postfix(loss=f"{train_terms['loss']:.3f}")
                    pending = []
            else:
                row = torch.stack([t.detach().float() for t in terms.values()])
                sums = torch.zeros_like(row) if sums is None else sums
                sums += row * len(index) if epoch_mean == "images" else row
                weight, batches = weight + len(index), batches + 1
        if log_every is None and sums is not None:
            sums, weight = _over_ranks(sums, weight)
            means = [v / weight for v in sums.tolist()] if epoch_mean == "images" else (sums / batches / ranks).tolist()
            _check_finite(names, means, epoch + 1, "its mean over the epoch")
            train_terms = dict(zip(names, means, strict=True))
            for name, value in train_terms.items():
                record(train_metric(name), value, epoch + 1)
        for name, module in modules.items():
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise Diverged(f"training diverged at epoch {epoch + 1}: the {name}'s weights became non-finite "
                               "(a learning rate too high?)")  # fmt: skip
        if evaluate is not None:
            test_terms = dict(evaluate(epoch + 1))
            for name, value in test_terms.items():
                record(test_metric(name), value, epoch + 1 if log_every is None else done)
        last = epoch == epochs - 1 or done == total_steps
        due = last or time.monotonic() - saved_at >= save_every_s
        if checkpoint is not None and distributed.object_from_rank0(due):  # rank 0's clock decides for all
            saved_at = time.monotonic()
            states = distributed.objects_of_all_ranks({"generator": generator.get_state(), "rng": rng_state(device),
                                                       "streams": {k: g.get_state() for k, g in (streams or {}).items()}})  # fmt: skip
            if rank == 0:
                _save_atomic(
                    {
                        "epoch": epoch + 1,
                        **{name: module.state_dict() for name, module in modules.items()},
                        "optimizer": optimizer.state_dict(),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        **states[0],
                        "world_size": ranks,
                        "ranks": states,
                        "history": history,
                        "last_train": train_terms,
                        "last_test": test_terms,
                    },
                    checkpoint,
                )
    bar.close()
    return LoopResult(
        epochs_run=max(0, epochs - start_epoch),
        resumed_from_epoch=start_epoch,
        steps=total_steps,
        last_train_terms=train_terms,
        last_test_terms=test_terms,
    )


@dataclass
class FitResult:
    epochs_run: int  # epochs trained in this call (0 when a checkpoint already held them all)
    resumed_from_epoch: int  # 0 for a fresh start
    steps: int  # optimiser steps in total
    last_test_terms: dict[str, float]


def fit(
    *,
    encoder: nn.Module,
    projector: nn.Module,
    objective: Objective,
    make_views: ViewMaker,
    train_images: Tensor,
    test_images: Tensor,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    device: torch.device,
    log: LogFn,
    generator: torch.Generator,
    checkpoint: Path | None = None,
    log_every: int = 20,
    progress: bool = True,
    make_test_views: ViewMaker | None = None,
    amp: bool = False,
    compile: bool = False,
) -> FitResult:
    """Train ``encoder`` and ``projector`` on ``objective``; see the module docstring.

    ``train_images``/``test_images`` are uint8 tensors; they may live on the CPU or on
    ``device`` (then no copy is made per batch). The last incomplete batch of each
    epoch is dropped: the variance and covariance terms need full batches. Every term
    is logged per batch, and on the test set after each epoch (``evaluate_objective``).
    ``make_test_views`` makes the test set's views when they differ from the training
    ones (indices then refer to the test set); by default ``make_views`` serves both.
    ``amp`` runs the networks under bf16 autocast on CUDA (see ``two_view_terms``);
    ``compile`` trains through ``torch.compile``d copies of both networks (same weights).
    """
    train_encoder = torch.compile(encoder) if compile else encoder
    train_projector = torch.compile(projector) if compile else projector
    pair = distributed.wrap(TwoViews(train_encoder, train_projector), device)  # itself outside torchrun
    train_objective = partial(objective, global_batch=True) if distributed.size() > 1 else objective
    test_views = make_test_views or make_views

    def step(batch: Tensor, index: Tensor) -> NamedTuple:
        view_a, view_b = make_views(batch, index, generator)
        return two_view_terms(pair, train_objective, view_a, view_b, amp)

    def evaluate(epoch: int) -> dict[str, float]:
        return evaluate_objective(encoder, projector, objective, test_views, test_images, batch_size, device)

    result = train_loop(
        step, train_images, modules={"encoder": encoder, "projector": projector}, optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, device=device, generator=generator, log=log, checkpoint=checkpoint, log_every=log_every,
        evaluate=evaluate if distributed.is_main() else None, progress=progress and distributed.is_main(),
    )  # fmt: skip
    return FitResult(result.epochs_run, result.resumed_from_epoch, result.steps, result.last_test_terms)


class TwoViews(nn.Module):
    """``projector(encoder(view))`` of each of two views, in two passes (BatchNorm sees each
    view on its own): one module, so that DDP wraps one forward per step."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projector = encoder, projector

    def forward(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.projector(self.encoder(view_a)), self.projector(self.encoder(view_b))


def two_view_terms(
    pair: nn.Module,
    objective: Objective,
    view_a: Tensor,
    view_b: Tensor,
    amp: bool = False,
) -> NamedTuple:
    """The objective's terms on a pair of view batches (on the device), with the graph for
    backward; ``pair`` is a ``TwoViews`` (or its DDP wrapper).

    With ``amp`` on a CUDA device the two forward passes run under bf16 autocast
    (convolutions and matrix products on the tensor cores; bf16 has float32's range, so
    no loss scaling is needed), while the objective itself is computed in float32: its
    variance and covariance terms are sums over the batch that bf16 would round away.
    """
    cuda_amp = amp and view_a.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda_amp):
        z_a, z_b = pair(view_a, view_b)
    return objective(z_a.float(), z_b.float())


def train_step(
    encoder: nn.Module,
    projector: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    view_a: Tensor,
    view_b: Tensor,
    amp: bool = False,
) -> NamedTuple:
    """One optimiser step on a pair of view batches, as ``fit`` takes it; returns the
    objective's terms (on the device). ``amp``: see ``two_view_terms``."""
    terms = two_view_terms(TwoViews(encoder, projector), objective, view_a, view_b, amp)
    optimizer.zero_grad(set_to_none=True)
    terms.loss.backward()
    optimizer.step()
    return terms


@torch.no_grad()
def evaluate_objective(
    encoder: nn.Module,
    projector: nn.Module,
    objective: Objective,
    make_views: ViewMaker,
    images: Tensor,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, float]:
    """The objective's terms on ``images`` in eval mode, averaged over full batches.

    Views come from a generator seeded with ``seed``, so every epoch sees the same
    test views and the test curve measures the model, not the draw.
    """
    encoder.eval()
    projector.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    index = torch.arange(len(images))
    sums: Tensor | None = None
    names: tuple[str, ...] = ()
    batches = max(1, len(images) // batch_size)
    for i in range(batches):
        part = index[i * batch_size : (i + 1) * batch_size]
        batch = images[part.to(images.device)].to(device, non_blocking=True)
        view_a, view_b = make_views(batch, part, generator)
        terms = objective(projector(encoder(view_a)), projector(encoder(view_b)))
        names = terms._fields
        row = torch.stack([t.float() for t in terms])
        sums = row if sums is None else sums + row
    assert sums is not None
    return dict(zip(names, (sums / batches).cpu().tolist(), strict=True))


def checkpoint_path(experiment: str, config: dict, part: str | None = None) -> Path:
    """Where a run of ``experiment`` with exactly this config, on exactly these data files,
    keeps its checkpoint (``$LFR_CHECKPOINT_DIR``, default ``checkpoints/``), so that
    rerunning the same command resumes it. The device is left out: a run may resume on
    another one. ``part`` names one of several checkpoints of one run (fine-tuning's label
    fraction and seed, say ``"1pct-seed0"``).

    The name is ``<experiment>-<config digest>-<data digest>``: the data digest is of the
    fingerprints of the data sets the run has read (``identity.checkpoint_reads``), so a
    checkpoint made on other files is never resumed; one line says so when there is one, and
    the run starts fresh. The first call of a run also takes the configuration's lock
    (``tracking.lock``; rank 0 alone under torchrun): a second process running the same
    configuration is refused.
    """
    config_digest = lock.config_digest(config)
    stem = f"{experiment}-{config_digest}-{lock.digest(identity.checkpoint_reads())}"
    directory = checkpoints_dir()
    if distributed.is_main():  # under torchrun rank 0 holds the lock for the whole run (it writes the checkpoints)
        lock.acquire(lock.for_config(experiment, config))
    for other in sorted(directory.glob(f"{experiment}-{config_digest}-*.pt")):
        if not other.name.startswith(stem) and other not in _said_other_data:
            _said_other_data.add(other)
            print(f"checkpoint {other} was made on other data files ({_describe_reads()}): not resumed, "
                  "this run starts fresh", file=sys.stderr)  # fmt: skip
    return directory / (f"{stem}.pt" if part is None else f"{stem}-{part}.pt")


_said_other_data: set[Path] = set()


def _describe_reads() -> str:
    reads = identity.checkpoint_reads()
    return ", ".join(f"{name} now {fingerprint}" for name, fingerprint in reads.items()) or "no data read"


def remove_checkpoints(experiment: str, config: dict) -> None:
    """Delete a finished run's checkpoints: ``checkpoint_path(experiment, config)``, each of
    its parts, and temporary files a kill mid-write left behind; then give up its lock."""
    path = checkpoint_path(experiment, config)
    for found in [path, *path.parent.glob(f"{path.stem}-*.pt"), *path.parent.glob(f".{path.stem}*.tmp")]:
        found.unlink(missing_ok=True)
    if distributed.is_main():
        lock.release(lock.for_config(experiment, config))


def on_device_if_fits(images: Tensor, device: torch.device, budget: float = 0.25) -> Tensor:
    """``images`` moved to a CUDA ``device`` when they take at most ``budget`` of its free
    memory (CIFAR-10's 50,000 uint8 images take 150 MB), so batches are sliced on the GPU
    with no host-to-device copy per step; otherwise, and on the CPU, returned as they are."""
    if device.type != "cuda" or images.device == device:
        return images
    free, _ = torch.cuda.mem_get_info(device)
    size = images.numel() * images.element_size()
    return images.to(device) if size <= budget * free else images


def load_checkpoint(path: Path | None) -> dict | None:
    """A checkpoint read onto the CPU (``load_state_dict`` copies onto the parameters' device,
    and generator states, CUDA ones too, are CPU byte tensors); None when there is none
    (or no path).

    A checkpoint that cannot be read (cut short by a full disk or a stopped copy) is named in
    one line and set aside as ``<name>.damaged``, kept for a look, and the run starts fresh."""
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a cut file
        aside = path.with_name(path.name + ".damaged")
        with contextlib.suppress(FileNotFoundError):  # another process of the run (torchrun) set it aside first
            path.replace(aside)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"checkpoint {path} is damaged ({reason}): set aside as {aside.name}, this run starts fresh",
              file=sys.stderr)  # fmt: skip
        return None


def rng_state(device: torch.device) -> dict[str, Tensor | None]:
    """The global random states a loop may draw from (dropout does): the CPU's, and ``device``'s
    when it is a CUDA device."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Tensor | None], device: torch.device) -> None:
    """Restore ``rng_state``'s states; a CUDA state is left out when resuming on the CPU."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_atomic(obj: object, path: Path) -> None:
    """Write to a temporary file of this writer's own (unique name, same folder) and rename it
    over ``path``: a kill mid-write leaves the old checkpoint, and two processes writing one
    checkpoint never share a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file, interrupts_deferred():
            torch.save(obj, file)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError | RuntimeError) and _disk_full(exc):  # torch.save wraps the OSError
            raise StoreError(f"cannot write checkpoint {path}: no space left on its disk; free some, or set "
                             "LFR_CHECKPOINT_DIR to a folder on another disk, and run the same command again") from None  # fmt: skip
        raise


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a full disk or an exceeded quota."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False

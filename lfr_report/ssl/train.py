"""One training loop for two-view self-supervised objectives (VICReg and its ablations).

Each step: make two views of a batch, project each with ``projector(encoder(view))``
(two forward passes, as Algorithm 1 of the exercise writes it, so BatchNorm sees
each view on its own), compute the objective, step the optimiser. Every term the
objective returns is logged per training batch, and once per epoch on the test set.

The loop keeps the per-batch terms on the device and hands them to ``log`` in
blocks (every ``log_every`` batches and at the end of each epoch), so there is no
host synchronisation per step. After every epoch it writes a checkpoint (weights,
optimiser, random state, the metrics logged so far); ``fit`` started with an existing
checkpoint resumes after its last epoch and replays the logged metrics first, so the
finished run holds the whole curve.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

# (batch uint8 on device, its indices in the training set, generator) -> two float views
ViewMaker = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]
Objective = Callable[[Tensor, Tensor], NamedTuple]
LogFn = Callable[[str, float, int], None]


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
    epoch is dropped: the variance and covariance terms need full batches.
    ``make_test_views`` makes the test set's views when they differ from the training
    ones (indices then refer to the test set); by default ``make_views`` serves both.
    ``amp`` runs the networks under bf16 autocast on CUDA (see ``train_step``);
    ``compile`` trains through ``torch.compile``d copies of both networks (same weights).
    """
    n = len(train_images)
    if n < batch_size:
        raise ValueError(f"{n} training images is fewer than one batch of {batch_size}")
    steps_per_epoch = n // batch_size
    history: list[tuple[str, float, int]] = []

    def record(name: str, value: float, step: int) -> None:
        history.append((name, value, step))
        log(name, value, step)

    start_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        # On the CPU: load_state_dict copies onto the parameters' device, and generator
        # states (CUDA ones too) are CPU byte tensors.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        encoder.load_state_dict(state["encoder"])
        projector.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_epoch = state["epoch"]
        for name, value, step in state["history"]:
            record(name, value, step)

    names: tuple[str, ...] = ()
    test_terms: dict[str, float] = {}
    train_encoder = torch.compile(encoder) if compile else encoder
    train_projector = torch.compile(projector) if compile else projector
    for epoch in range(start_epoch, epochs):
        encoder.train()
        projector.train()
        order = torch.randperm(n, generator=generator, device=generator.device)
        pending: list[Tensor] = []
        first_pending_step = epoch * steps_per_epoch
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
        )
        for i in bar:
            index = order[i * batch_size : (i + 1) * batch_size]
            batch = train_images[index.to(train_images.device)].to(device, non_blocking=True)
            view_a, view_b = make_views(batch, index, generator)
            terms = train_step(train_encoder, train_projector, objective, optimizer, view_a, view_b, amp)
            names = terms._fields
            pending.append(torch.stack([t.detach().float() for t in terms]))
            if len(pending) == log_every or i == steps_per_epoch - 1:
                values = torch.stack(pending).cpu().tolist()
                for offset, row in enumerate(values):
                    for name, value in zip(names, row, strict=True):
                        record(f"train_{name}", value, first_pending_step + offset)
                bar.set_postfix(loss=f"{values[-1][0]:.3f}")
                first_pending_step += len(pending)
                pending = []
        step = (epoch + 1) * steps_per_epoch
        test_views = make_test_views or make_views
        test_terms = evaluate_objective(encoder, projector, objective, test_views, test_images, batch_size, device)
        for name, value in test_terms.items():
            record(f"test_{name}", value, step)
        if checkpoint is not None:
            _save_atomic(
                {
                    "epoch": epoch + 1,
                    "encoder": encoder.state_dict(),
                    "projector": projector.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "history": history,
                },
                checkpoint,
            )
    return FitResult(
        epochs_run=max(0, epochs - start_epoch),
        resumed_from_epoch=start_epoch,
        steps=epochs * steps_per_epoch,
        last_test_terms=test_terms,
    )


def train_step(
    encoder: nn.Module,
    projector: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    view_a: Tensor,
    view_b: Tensor,
    amp: bool = False,
) -> NamedTuple:
    """One optimiser step on a pair of view batches; returns the objective's terms (on the device).

    With ``amp`` on a CUDA device the two forward passes run under bf16 autocast
    (convolutions and matrix products on the tensor cores; bf16 has float32's range, so
    no loss scaling is needed), while the objective itself is computed in float32: its
    variance and covariance terms are sums over the batch that bf16 would round away.
    """
    cuda_amp = amp and view_a.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda_amp):
        z_a = projector(encoder(view_a))
        z_b = projector(encoder(view_b))
    terms = objective(z_a.float(), z_b.float())
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


def checkpoint_path(experiment: str, config: dict) -> Path:
    """Where a run of ``experiment`` with exactly this config keeps its checkpoint
    (``$LFR_CHECKPOINT_DIR``, default ``checkpoints/``), so that rerunning the same command
    resumes it. The device is left out: a run may resume on another one."""
    described = json.dumps({k: v for k, v in config.items() if k != "device"}, sort_keys=True)
    digest = hashlib.sha256(described.encode()).hexdigest()[:16]
    return Path(os.environ.get("LFR_CHECKPOINT_DIR", "checkpoints")) / f"{experiment}-{digest}.pt"


def on_device_if_fits(images: Tensor, device: torch.device, budget: float = 0.25) -> Tensor:
    """``images`` moved to a CUDA ``device`` when they take at most ``budget`` of its free
    memory (CIFAR-10's 50,000 uint8 images take 150 MB), so batches are sliced on the GPU
    with no host-to-device copy per step; otherwise, and on the CPU, returned as they are."""
    if device.type != "cuda" or images.device == device:
        return images
    free, _ = torch.cuda.mem_get_info(device)
    size = images.numel() * images.element_size()
    return images.to(device) if size <= budget * free else images


def _save_atomic(obj: object, path: Path) -> None:
    """Write to a temporary file and rename, so a kill mid-write leaves the old checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)

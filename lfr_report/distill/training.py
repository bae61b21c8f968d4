"""A distillation run's course: the real tasks it reads, the epochs of outer steps with
what each logs, protocol (b) of the final D, and the baselines a D of its size must beat.

Everything is logged through ``log(name, value, step)`` (a Sacred run's ``log_scalar``),
under the names of ``lfr_report.names``; with two tasks the per-task metrics end in
``_<task>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lfr_report import names
from lfr_report.data import load_dataset
from lfr_report.distill.evaluation import (
    probe_accuracy,
    random_features,
    random_subset,
    retrained_accuracy,
    supervised_accuracy,
)
from lfr_report.distill.inner import reconstruction_error
from lfr_report.distill.solvers import Distiller, InnerSpec, Task
from lfr_report.errors import ConfigError
from lfr_report.evaluate import linear_probe

Log = Callable[..., None]  # log(name, value, step=None)


def load_task(name: str, train_size: int | None, test_size: int | None, seed: int) -> Task:
    """A task's real images, flattened to [0, 1]; all tasks must share one image shape."""
    train, test = (
        load_dataset(name, "train").subset(train_size, seed),
        load_dataset(name, "test").subset(test_size, seed),
    )
    if train.spec.shape[0] != 1 or train.spec.shape[1:] != (28, 28):
        raise ConfigError(f"distillation uses 28x28 grey images; {name} is {'x'.join(map(str, train.spec.shape))}")
    flat = [split.images.flatten(1).float() / 255 for split in (train, test)]
    source = train.source if train.source == test.source else f"{train.source}; {test.source}"  # both splits named
    return Task(name, flat[0], train.labels, flat[1], test.labels, source)


def task_suffixes(tasks: Sequence[Task]) -> list[str]:
    """Each task's ending of the per-task metric names: none for one task, ``_<task>`` for several."""
    return [""] if len(tasks) == 1 else [f"_{t.name}" for t in tasks]


@dataclass
class Schedule:
    """How the outer problem is run: epochs, batches, the learning rate and rho over the
    epochs, and how often (and how) protocol (b) refits w on D."""

    epochs: int
    batch_size: int
    lr: float
    lr_decay: str  # constant | cosine
    rho: float  # at the first epoch, grown geometrically to rho_max at the last
    rho_max: float
    eval_every: int  # 0: protocol (b) only at the first, middle and last epoch
    retrain_steps: int
    retrain_lr: float
    eval_seeds: int  # protocol (b) of the final D: refits from this many inits
    snapshots: int  # D snapshots kept, spread over the epochs


def distill(distiller: Distiller, tasks: Sequence[Task], schedule: Schedule, seed: int, log: Log,
            desc: str = "distill") -> tuple[dict[int, Tensor], dict[str, float]]:  # fmt: skip
    """Run the outer problem for ``schedule.epochs``; then protocol (b) of the final D.

    Per epoch it logs the mean of each solver term, ``rho``, protocol (a) per task, the
    reconstruction error on the first task's real test images and on D; every
    ``eval_every`` epochs (and the first, middle and last) protocol (b) per task; at the end
    protocol (b) of the final D once per refit seed. Returns D's snapshots by epoch and
    each task's mean final protocol-(b) accuracy.
    """
    s, spec = schedule, distiller.spec
    generator = torch.Generator().manual_seed(seed)
    steps = min(len(t.train_x) for t in tasks) // s.batch_size
    keep = sorted({0, *np.linspace(1, s.epochs, s.snapshots).round().astype(int).tolist()})
    history = {0: distiller.D.detach().clone()}
    suffix = task_suffixes(tasks)
    for epoch in tqdm(range(1, s.epochs + 1), desc=desc):
        distiller.rho = s.rho * (s.rho_max / s.rho) ** ((epoch - 1) / max(1, s.epochs - 1))
        if s.lr_decay == "cosine":
            for group in distiller.optimizer.param_groups:
                group["lr"] = 0.5 * s.lr * (1 + math.cos(math.pi * (epoch - 1) / s.epochs))
        orders = [torch.randperm(len(t.train_x), generator=generator) for t in tasks]
        sums: dict[str, float] = {}
        for i in range(steps):
            picks = [order[i * s.batch_size : (i + 1) * s.batch_size] for order in orders]
            terms = distiller.step([(t.train_x[p], t.train_y[p]) for t, p in zip(tasks, picks, strict=True)])
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value)
        means = {name: total / steps for name, total in sums.items()}
        distiller.check_finite(epoch, means)
        for name, value in means.items():
            log(name, value, epoch)
        log("rho", distiller.rho, epoch)
        for tag, accuracy in zip(suffix, distiller.course_accuracy(), strict=True):
            log(f"{names.COURSE_TEST_ACCURACY}{tag}", accuracy, epoch)
        with torch.no_grad():
            log(names.RECON_ERROR, float(reconstruction_error(distiller.w, tasks[0].test_x, spec.sigma2)), epoch)
            log(names.RECON_ERROR_D, float(reconstruction_error(distiller.w, distiller.D, spec.sigma2)), epoch)
        if epoch in keep:
            history[epoch] = distiller.D.detach().clone()
        if epoch in (1, s.epochs // 2, s.epochs) or (s.eval_every and epoch % s.eval_every == 0):
            for tag, task in zip(suffix, tasks, strict=True):
                accuracy, error, _ = retrained_accuracy(spec, distiller.D, task, s.retrain_steps, s.retrain_lr, seed)
                log(f"{names.RETRAINED_TEST_ACCURACY}{tag}", accuracy, epoch)
                log(f"{names.RETRAINED_RECON_ERROR}{tag}", error, epoch)

    protocol_b = {}
    for tag, task in zip(suffix, tasks, strict=True):  # protocol (b) of the final D, refitted from eval_seeds inits
        accuracies = [retrained_accuracy(spec, distiller.D, task, s.retrain_steps, s.retrain_lr, seed + k)[0]
                      for k in range(s.eval_seeds)]  # fmt: skip
        for k, accuracy in enumerate(accuracies):
            log(f"{names.FINAL_RETRAINED_TEST_ACCURACY}{tag}", accuracy, k)
        protocol_b[task.name] = sum(accuracies) / s.eval_seeds
    return history, protocol_b


def score_baselines(
    spec: InnerSpec, task: Task, size: int, schedule: Schedule, seed: int, log: Log
) -> dict[str, float]:
    """Protocol (b)'s reference points for ``size`` images (what D has to beat), and
    protocol (a)'s ceiling (the same network trained on the real data alone). The random
    subset is drawn ``eval_seeds`` times (logged per draw, step = its index); the result
    holds its mean."""
    s = schedule
    subsets = []
    for k in range(s.eval_seeds):
        subset = random_subset(task.train_x, size, seed + k)
        subsets.append(retrained_accuracy(spec, subset, task, s.retrain_steps, s.retrain_lr, seed + k)[:2])
        log(names.RANDOM_SUBSET_TEST_ACCURACY, subsets[-1][0], k)
        log(names.RANDOM_SUBSET_RECON_ERROR, subsets[-1][1], k)
    subset_acc, subset_err = (sum(values) / s.eval_seeds for values in zip(*subsets, strict=True))
    full_acc, full_err, _ = retrained_accuracy(spec, task.train_x, task, s.retrain_steps, s.retrain_lr, seed)
    random_acc = probe_accuracy(random_features(spec, task.train_x.shape[1], seed), task, seed)
    pixels = linear_probe(task.train_x, task.train_y, task.test_x, task.test_y, seed=seed).test_accuracy
    supervised = supervised_accuracy(spec, task, s.epochs, s.batch_size, s.lr, seed)
    results = {names.SUPERVISED_TEST_ACCURACY: supervised, names.ALL_REAL_TEST_ACCURACY: full_acc,
               names.ALL_REAL_RECON_ERROR: full_err, names.RANDOM_FEATURES_TEST_ACCURACY: random_acc,
               names.PIXELS_TEST_ACCURACY: pixels}  # fmt: skip
    for name, value in results.items():
        log(name, value)
    results.update({names.RANDOM_SUBSET_TEST_ACCURACY: subset_acc, names.RANDOM_SUBSET_RECON_ERROR: subset_err})
    return results

"""Unsupervised dataset distillation by bilevel optimisation (the lfr2024 project).

    python experiments/distill.py                         # default: quadratic penalty, |D| = 100, MNIST digits
    python experiments/distill.py with value              # optimal-value reformulation
    python experiments/distill.py with implicit           # implicit differentiation (CG on Hessian-vector products)
    python experiments/distill.py with baselines          # no distillation: protocol (b)'s baselines for |D|
    python experiments/distill.py with with_diversity dsm size=500 tasks='["mnist", "fashion_mnist"]'
    python experiments/distill.py with value exact_sm   # the inner loss with Hyvarinen's trace term
    python experiments/distill.py with full               # the course's setting: |D| = 300, 200 epochs, Adam 1e-4
    python experiments/distill.py print_config

Per epoch the run logs ``outer_loss``, ``penalty``, ``rho``, ``course_test_accuracy``
(protocol (a): the jointly trained head and features on the real test set; with several
tasks one metric per task, ``course_test_accuracy_<task>``), ``recon_error`` (||X - AE(X)||
on the real test images) and ``recon_error_D`` (on D itself); every ``eval_every`` epochs
and at the end ``retrained_test_accuracy`` and ``retrained_recon_error`` (protocol (b): w
refitted from scratch on D alone, a linear probe on the real training set's features);
after the last epoch ``final_retrained_test_accuracy`` once per refit seed (step = its
index; ``eval_seeds`` of them), whose mean is the run's protocol-(b) result. ``baselines``
logs ``random_subset_test_accuracy`` once per random subset drawn.
Artifacts: ``distilled.npz`` (D, its snapshots over the epochs, the final W, b, a).
A NaN or inf stops the run with the epoch and the term that diverged, marked FAILED.
"""

from __future__ import annotations

# isort: off
import lfr_report  # noqa: F401  (first: it silences the warning Sacred's import of pkg_resources prints)

# isort: on
import math
from pathlib import Path

import numpy as np
import torch
from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm.auto import tqdm

from lfr_report.data import load_dataset
from lfr_report.distill import SOLVERS, Distiller, InnerSpec, Task, reconstruction_error
from lfr_report.distill.evaluation import (
    probe_accuracy,
    random_features,
    random_subset,
    retrained_accuracy,
    supervised_accuracy,
)
from lfr_report.errors import ConfigError
from lfr_report.evaluate import linear_probe
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

ex = Experiment("distill", base_dir=str(Path(__file__).resolve().parents[1]))
ex.captured_out_filter = apply_backspaces_and_linefeeds


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run (reports show it)
    seed = 0  # seeds D's init, w's init, the batches and the heads
    tasks = ["mnist"]  # outer tasks, each a 28x28 data set; several = multi-task (one head each, D and w shared)
    train_size = 8000  # real labelled images per task for the outer loss (mnist: its fixed 8,000 / 2,000 split)
    test_size = 2000  # real test images per task
    solver = "penalty"  # penalty | value | implicit | baselines (no distillation: protocol (b)'s baselines)
    size = 100  # |D|: distilled images (the assignment suggests 10, 50, 100, 500; the course used 300)
    init_high = 1 / 16  # D starts uniform in [0, init_high] (the course's)
    hidden = 64  # K, hidden units of the tied autoencoder (the course's)
    sigma2 = 1.0  # sigma^2 of the Gaussian visible units (the course's)
    weight_decay = 1e-4  # on W in the inner loss (the course's)
    noise = 0.0  # DSM corruption std; 0 is the course's (improper) score matching, e.g. 0.3 makes it proper
    trace = False  # True: add Hyvarinen's trace term, exact score matching (proper without noise; not with noise)
    epochs = 100  # passes over each task's real training images
    batch_size = 100  # real images per outer step and task (the course's)
    lr = 1e-3  # Adam on D, w and the heads (the course's 1e-4 needs 200+ epochs; see `full`)
    lr_decay = "constant"  # constant (the course's) | cosine: lr decays to 0 along a cosine over the epochs
    rho = 1.0  # penalty weight at the first epoch
    rho_max = 1000.0  # ... grown geometrically to this at the last (penalty and value solvers)
    diversity = 0.0  # lambda of the diversity term -lambda ||D - mean(D)||^2 / |D|
    inner_steps = 5  # value: Adam steps on w' per outer step; implicit: on w
    inner_lr = 1e-3  # Adam learning rate of those inner steps
    cg_iterations = 10  # implicit: conjugate-gradient iterations for H^-1 grad_w L_out
    damping = 1e-2  # implicit: added to the Hessian's diagonal
    eval_every = 10  # epochs between protocol-(b) evaluations (each refits w on D)
    retrain_steps = 2000  # protocol (b): full-batch Adam steps refitting w on D alone
    retrain_lr = 1e-3  # protocol (b): their learning rate
    eval_seeds = 5  # protocol (b) at the end: w refitted on D from this many inits (baselines: this many random
    # subsets); one refit moves the accuracy by up to a point, so reports give the mean +- std
    snapshots = 8  # D snapshots kept for the report's strip (spread over the epochs)


@ex.named_config
def smoke():
    scale = "smoke"  # seconds: synthetic gratings, a tiny model, 2 epochs
    tasks = ["synthetic"]
    train_size = 512
    test_size = 256
    size = 20
    hidden = 8
    epochs = 2
    batch_size = 64
    eval_every = 1
    retrain_steps = 50
    eval_seeds = 2
    snapshots = 2
    cg_iterations = 3


@ex.named_config
def default():
    scale = "default"  # the CPU path `make report` runs


@ex.named_config
def full():
    scale = "full"  # the course's reference setting: |D| = 300, 200 epochs of Adam at 1e-4
    size = 300
    epochs = 200
    lr = 1e-4


@ex.named_config
def penalty():
    solver = "penalty"  # quadratic penalty (rho/2) ||grad_w L_inner||^2, rho growing


@ex.named_config
def value():
    solver = "value"  # optimal-value reformulation: rho [L_inner(w) - min_w' L_inner(w')]


@ex.named_config
def implicit():
    solver = "implicit"  # implicit differentiation: hypergradient through CG on Hessian-vector products


@ex.named_config
def baselines():
    solver = "baselines"  # no distillation: random real subset of |D|, all real images, random features, pixels,
    # and protocol (a)'s ceiling: the same network trained on the real data alone


@ex.named_config
def with_diversity():
    diversity = 0.1  # the assignment's diversity term, against D collapsing onto a few images


@ex.named_config
def dsm():
    noise = 0.3  # denoising score matching: a proper scoring rule (a tied denoising autoencoder)


@ex.named_config
def exact_sm():
    trace = True  # exact score matching: the course's loss plus Hyvarinen's trace term, a proper scoring rule
# fmt: on


@ex.config_hook
def check(config, command_name, logger):
    """Impossible values fail before a run is recorded."""
    if config["solver"] not in (*SOLVERS, "baselines"):
        raise ConfigError(f"unknown solver {config['solver']!r}; use penalty, value, implicit or baselines")
    for key in ("size", "hidden", "epochs", "batch_size", "eval_every", "retrain_steps", "eval_seeds", "snapshots",
                "inner_steps", "cg_iterations", "train_size", "test_size"):  # fmt: skip
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}")
    for key in ("lr", "sigma2", "inner_lr", "retrain_lr", "rho", "rho_max", "init_high"):
        if not config[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {config[key]!r}")
    for key in ("weight_decay", "noise", "diversity", "damping"):
        if config[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {config[key]!r}")
    if config["trace"] and config["noise"] > 0:
        raise ConfigError("trace (exact score matching) and noise > 0 (denoising) are two proper losses; choose one")
    if config["lr_decay"] not in ("constant", "cosine"):
        raise ConfigError(f"lr_decay must be constant or cosine, got {config['lr_decay']!r}")
    if not config["tasks"]:
        raise ConfigError("tasks must name at least one data set, e.g. tasks='[\"mnist\"]'")
    return {}


def load_task(name: str, train_size: int, test_size: int, seed: int) -> Task:
    """A task's real images, flattened to [0, 1]; all tasks must share one image shape."""
    train, test = (
        load_dataset(name, "train").subset(train_size, seed),
        load_dataset(name, "test").subset(test_size, seed),
    )
    if train.spec.shape[0] != 1 or train.spec.shape[1:] != (28, 28):
        raise ConfigError(f"distillation uses 28x28 grey images; {name} is {'x'.join(map(str, train.spec.shape))}")
    flat = [split.images.flatten(1).float() / 255 for split in (train, test)]
    return Task(name, flat[0], train.labels, flat[1], test.labels, test.source)


def run_baselines(_run, spec: InnerSpec, task: Task, size: int, retrain_steps: int, retrain_lr: float, seed: int,
                  epochs: int, batch_size: int, lr: float, eval_seeds: int):  # fmt: skip
    """Protocol (b)'s reference points for ``size`` images (what D has to beat), and
    protocol (a)'s ceiling (the same network trained on the real data alone). The random
    subset is drawn ``eval_seeds`` times (logged per draw, step = its index)."""
    subsets = []
    for k in range(eval_seeds):
        subset = random_subset(task.train_x, size, seed + k)
        subsets.append(retrained_accuracy(spec, subset, task, retrain_steps, retrain_lr, seed + k)[:2])
        _run.log_scalar("random_subset_test_accuracy", subsets[-1][0], k)
        _run.log_scalar("random_subset_recon_error", subsets[-1][1], k)
    subset_acc, subset_err = (sum(values) / eval_seeds for values in zip(*subsets, strict=True))
    full_acc, full_err, _ = retrained_accuracy(spec, task.train_x, task, retrain_steps, retrain_lr, seed)
    random_acc = probe_accuracy(random_features(spec, task.train_x.shape[1], seed), task, seed)
    pixels = linear_probe(task.train_x, task.train_y, task.test_x, task.test_y, seed=seed).test_accuracy
    supervised = supervised_accuracy(spec, task, epochs, batch_size, lr, seed)
    results = {"supervised_test_accuracy": supervised, "all_real_test_accuracy": full_acc, "all_real_recon_error": full_err,
               "random_features_test_accuracy": random_acc, "pixels_test_accuracy": pixels}  # fmt: skip
    for name, value in results.items():
        _run.log_scalar(name, value)
    results.update(random_subset_test_accuracy=subset_acc, random_subset_recon_error=subset_err)
    print(f"distill baselines run {_run._id} ({task.name}, |D| = {size}): random subset {subset_acc:.2%} "
          f"(mean of {eval_seeds}), "
          f"all {len(task.train_x)} real {full_acc:.2%}, random features {random_acc:.2%}, pixels {pixels:.2%}; "
          f"protocol (a)'s ceiling (supervised, no D) {supervised:.2%}; "
          f"recorded in {run_location(_run)}")  # fmt: skip
    return results


@ex.main
def main(_run, _seed, scale, tasks, train_size, test_size, solver, size, init_high, hidden, sigma2, weight_decay, noise,
         trace, epochs, batch_size, lr, lr_decay, rho, rho_max, diversity, inner_steps, inner_lr, cg_iterations, damping, eval_every,
         retrain_steps, retrain_lr, eval_seeds, snapshots):  # fmt: skip
    begin_run(_run, _seed, "cpu")  # small dense problems: the CPU is the right device
    real = [load_task(name, train_size, test_size, _seed) for name in tasks]
    spec = InnerSpec(hidden, sigma2, weight_decay, noise, trace)
    _run.info.update(train_images=[len(t.train_x) for t in real], test_images=[len(t.test_x) for t in real],
                     dataset=" + ".join(tasks), data_source="; ".join(t.source for t in real))  # fmt: skip
    if solver == "baselines":
        return run_baselines(
            _run, spec, real[0], size, retrain_steps, retrain_lr, _seed, epochs, batch_size, lr, eval_seeds
        )

    distiller = Distiller(solver, spec, real, size, lr=lr, init_high=init_high, diversity_weight=diversity, rho=rho,
                          inner_steps=inner_steps, inner_lr=inner_lr, cg_iterations=cg_iterations, damping=damping,
                          seed=_seed)  # fmt: skip
    generator = torch.Generator().manual_seed(_seed)
    steps = min(len(t.train_x) for t in real) // batch_size
    keep = sorted({0, *np.linspace(1, epochs, snapshots).round().astype(int).tolist()})
    history = {0: distiller.D.detach().clone()}
    suffix = [""] if len(real) == 1 else [f"_{t.name}" for t in real]
    protocol_b = {}
    for epoch in tqdm(range(1, epochs + 1), desc=f"distill ({solver})"):
        distiller.rho = rho * (rho_max / rho) ** ((epoch - 1) / max(1, epochs - 1))
        if lr_decay == "cosine":
            for group in distiller.optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * (epoch - 1) / epochs))
        orders = [torch.randperm(len(t.train_x), generator=generator) for t in real]
        sums: dict[str, float] = {}
        for i in range(steps):
            picks = [order[i * batch_size : (i + 1) * batch_size] for order in orders]
            terms = distiller.step([(t.train_x[p], t.train_y[p]) for t, p in zip(real, picks, strict=True)])
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value)
        means = {name: total / steps for name, total in sums.items()}
        distiller.check_finite(epoch, means)
        for name, value in means.items():
            _run.log_scalar(name, value, epoch)
        _run.log_scalar("rho", distiller.rho, epoch)
        for tag, accuracy in zip(suffix, distiller.course_accuracy(), strict=True):
            _run.log_scalar(f"course_test_accuracy{tag}", accuracy, epoch)
        with torch.no_grad():
            _run.log_scalar("recon_error", float(reconstruction_error(distiller.w, real[0].test_x, sigma2)), epoch)
            _run.log_scalar("recon_error_D", float(reconstruction_error(distiller.w, distiller.D, sigma2)), epoch)
        if epoch in keep:
            history[epoch] = distiller.D.detach().clone()
        if epoch % eval_every == 0 or epoch in (1, epochs):
            for tag, task in zip(suffix, real, strict=True):
                accuracy, error, _ = retrained_accuracy(spec, distiller.D, task, retrain_steps, retrain_lr, _seed)
                _run.log_scalar(f"retrained_test_accuracy{tag}", accuracy, epoch)
                _run.log_scalar(f"retrained_recon_error{tag}", error, epoch)

    for tag, task in zip(suffix, real, strict=True):  # protocol (b) of the final D, refitted from eval_seeds inits
        accuracies = [retrained_accuracy(spec, distiller.D, task, retrain_steps, retrain_lr, _seed + k)[0]
                      for k in range(eval_seeds)]  # fmt: skip
        for k, accuracy in enumerate(accuracies):
            _run.log_scalar(f"final_retrained_test_accuracy{tag}", accuracy, k)
        protocol_b[task.name] = sum(accuracies) / eval_seeds

    w = distiller.w
    add_npz_artifact(_run, "distilled.npz", D=distiller.D.detach(), snapshots=torch.stack(list(history.values())),
                     snapshot_epochs=np.array(list(history)), W=w.W.detach(), b=w.b.detach(), a=w.a.detach())  # fmt: skip
    course = distiller.course_accuracy()
    print(f"distill run {_run._id} ({solver}, |D| = {size}, {', '.join(tasks)}): protocol (a) "
          f"{', '.join(f'{a:.2%}' for a in course)}, protocol (b) {', '.join(f'{a:.2%}' for a in protocol_b.values())} "
          f"(mean of {eval_seeds} refits); "
          f"D and w in {run_location(_run)}")  # fmt: skip
    return {"course_test_accuracy": course[0], "retrained_test_accuracy": protocol_b[real[0].name]}


if __name__ == "__main__":
    run_commandline(ex)

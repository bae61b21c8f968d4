"""Unsupervised dataset distillation by bilevel optimisation (the lfr2024 project).

    python experiments/distill.py                         # default: quadratic penalty, |D| = 100, MNIST (10,000 / 10,000)
    python experiments/distill.py with value              # optimal-value reformulation
    python experiments/distill.py with implicit           # implicit differentiation (CG on Hessian-vector products)
    python experiments/distill.py with baselines          # no distillation: protocol (b)'s baselines for |D|
    python experiments/distill.py with with_diversity dsm size=500 second_task=fashion_mnist
    python experiments/distill.py with value exact_sm   # the inner loss with Hyvarinen's trace term
    python experiments/distill.py with value wide       # a wider inner learner: 256 hidden units instead of 64
    python experiments/distill.py with value with_prior # a prior on D: a Gaussian fitted to the real images
    python experiments/distill.py with value two_layers # two stacked tied autoencoders, meta-learned together
    python experiments/distill.py with value data.name=fashion_mnist  # Fashion-MNIST as the target
    python experiments/distill.py with full               # the course's setting: |D| = 300, 200 epochs, Adam 1e-4
    python experiments/distill.py print_config

Per epoch the run logs ``outer_loss``, ``penalty`` (and ``diversity``, ``prior_nll`` when
on), ``rho``, ``course_test_accuracy`` (protocol (a): the jointly trained head and features
on the real test set; with a ``second_task`` one metric per task,
``course_test_accuracy_<task>``), ``recon_error`` (||X - AE(X)|| on the real test images)
and ``recon_error_D`` (on D itself); every ``eval_every`` epochs and at the end
``retrained_test_accuracy`` and ``retrained_recon_error`` (protocol (b): w refitted from
scratch on D alone, a linear probe on the real training set's features); after the last
epoch ``final_retrained_test_accuracy`` once per refit seed (step = its index;
``eval_seeds`` of them), whose mean is the run's protocol-(b) result, and the
``ambiguity_*`` checks of the final D (``lfr_report.distill.ambiguity``: the inner loss
under a turned, a bent and a reordered D; protocol (b), first seed, on the turned and the
reordered D). ``baselines`` logs ``random_subset_test_accuracy`` once per random subset drawn.
Artifacts: ``distilled.npz`` (D, its snapshots over the epochs, the final W, b, a; with
several layers also W_2, b_2, a_2, ...). The epochs themselves run in
``lfr_report.distill.training``.
A NaN or inf stops the run with the epoch and the term that diverged, marked FAILED.
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import get_spec
from lfr_report.distill import SOLVERS, Distiller, InnerSpec, ambiguity
from lfr_report.distill.evaluation import retrained_accuracy
from lfr_report.distill.prior import GaussianPrior
from lfr_report.distill.training import Schedule, distill, load_task, score_baselines
from lfr_report.errors import ConfigError
from lfr_report.experiment import (
    added_later,
    at_least,
    boolean,
    checks,
    dataset,
    new_experiment,
    non_negative,
    one_of,
    optional,
    positive,
    positive_int,
    record_data,
)
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

# data.name: the main task, a 28x28 data set; data.train_size / data.test_size: its real labelled images for the outer
# loss (drawn from the training split) and its real test images (None: the whole test split), and as many of
# second_task's. The course's setting: 10,000 labelled images of MNIST's official training split, every accuracy on
# its official 10,000-image test split.
ex = new_experiment("distill", data={"name": "mnist", "train_size": 10000, "test_size": None})


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run (reports show it)
    seed = 0  # seeds D's init, w's init, the batches and the heads
    second_task = None  # a second 28x28 data set distilled into the same D (multi-task: one head each, D and w shared)
    solver = "penalty"  # penalty | value | implicit | baselines (no distillation: protocol (b)'s baselines)
    size = 100  # |D|: distilled images (the assignment suggests 10, 50, 100, 500; the course used 300)
    init_high = 1 / 16  # D starts uniform in [0, init_high] (the course's)
    hidden = 64  # K, hidden units of the tied autoencoder (the course's)
    layers = 1  # 1: the course's one-layer feature extractor | 2+: tied autoencoders stacked (K units each), layer l
    # fitted on layer l-1's features of D (layer-wise inner problems), all meta-learned together; penalty and value only
    sigma2 = 1.0  # sigma^2 of the Gaussian visible units (the course's)
    weight_decay = 1e-4  # on W in the inner loss (the course's)
    noise = 0.0  # DSM corruption std; 0 is the course's (improper) score matching, e.g. 0.3 makes it proper
    trace = False  # True: add Hyvarinen's trace term, exact score matching (proper without noise; not with noise)
    epochs = 100  # passes over each task's real training images
    batch_size = 100  # real images per outer step and task (the course's)
    lr = 3e-3  # Adam on D, w and the heads; at 100 epochs the value solver's protocol (a) was 93.5 / 93.9 / 94.2 /
    # 94.2% at 1e-3 / 2e-3 / 3e-3 / 5e-3 (docs/reports/distillation.md); the course's 1e-4 needs 200+ epochs (see `full`)
    lr_decay = "constant"  # constant (the course's) | cosine: lr decays to 0 along a cosine over the epochs
    rho = 1.0  # penalty weight at the first epoch
    rho_max = 1000.0  # ... grown geometrically to this at the last (penalty and value solvers)
    diversity = 0.0  # lambda of the diversity term -lambda ||D - mean(D)||^2 / |D|
    prior = 0.0  # weight of the prior term: D's mean negative log-likelihood per pixel under a Gaussian (probabilistic
    # PCA) fitted to the real training images (lfr_report.distill.prior); 0: no prior
    prior_components = 50  # principal directions the prior keeps (the rest share one variance)
    inner_steps = 5  # value: Adam steps on w' per outer step; implicit: on w
    inner_lr = 1e-3  # Adam learning rate of those inner steps
    cg_iterations = 10  # implicit: conjugate-gradient iterations for H^-1 grad_w L_out
    damping = 1e-2  # implicit: added to the Hessian's diagonal
    eval_every = 10  # epochs between protocol-(b) evaluations (each refits w on D, ~2-8 s on a CPU core); 0: only at
    # the first, middle and last epoch, the marks of the report's epoch table (its runs without a curve take 0)
    retrain_steps = 2000  # protocol (b): full-batch Adam steps refitting w on D alone
    retrain_lr = 1e-3  # protocol (b): their learning rate
    eval_seeds = 5  # protocol (b) at the end: w refitted on D from this many inits (baselines: this many random
    # subsets); one refit moves the accuracy by up to a point, so reports give the mean +- std
    snapshots = 8  # D snapshots kept for the report's strip (spread over the epochs)


@ex.named_config
def smoke():
    scale = "smoke"  # seconds: synthetic gratings, a tiny model, 2 epochs
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
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
def full():
    scale = "full"  # the course's reference setting: |D| = 300, 200 epochs of Adam at 1e-4
    size = 300
    epochs = 200
    lr = 1e-4


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 600, "test_size": 200}  # |D| = 500 needs 500 real images for its random-subset baseline
    epochs = 2
    eval_every = 1
    retrain_steps = 50
    eval_seeds = 2
    snapshots = 2


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
def wide():
    hidden = 256  # a wider inner learner (the course: "different NN / DEM architectures"); 64 is the reference


@ex.named_config
def two_layers():
    layers = 2  # the project text's "apply the approach layer-wise / meta-learn multiple layers at once"


@ex.named_config
def with_diversity():
    diversity = 0.1  # the assignment's diversity term, against D collapsing onto a few images


@ex.named_config
def with_prior():
    prior = 0.1  # the project text's "pre-train a prior log p_psi(x) ... and add to loss", against unnatural-looking D


@ex.named_config
def dsm():
    noise = 0.3  # denoising score matching: a proper scoring rule (a tied denoising autoencoder)


@ex.named_config
def exact_sm():
    trace = True  # exact score matching: the course's loss plus Hyvarinen's trace term, a proper scoring rule
# fmt: on


def _one_loss_and_known_tasks(config):
    if config["layers"] > 1 and config["solver"] == "implicit":
        raise ConfigError("layers > 1 works with the penalty and value solvers (or baselines), not implicit")
    if config["trace"] and config["noise"] > 0:
        raise ConfigError("trace (exact score matching) and noise > 0 (denoising) are two proper losses; choose one")
    if config["second_task"] is not None:
        get_spec(config["second_task"])  # an unknown name fails here
        if config["second_task"] == config["data"]["name"]:
            raise ConfigError(f"second_task must be another data set than data.name={config['data']['name']!r}")


checks(ex, {
    "second_task": optional(dataset), "trace": boolean,
    "solver": one_of(*SOLVERS, "baselines"), "size": positive_int, "hidden": positive_int, "epochs": positive_int,
    "batch_size": positive_int, "eval_every": at_least(0), "retrain_steps": positive_int, "eval_seeds": positive_int,
    "snapshots": positive_int, "inner_steps": positive_int, "cg_iterations": positive_int, "lr": positive,
    "sigma2": positive, "inner_lr": positive, "retrain_lr": positive, "rho": positive, "rho_max": positive,
    "init_high": positive, "weight_decay": non_negative, "noise": non_negative, "diversity": non_negative,
    "damping": non_negative, "lr_decay": one_of("constant", "cosine"), "prior": non_negative,
    "prior_components": positive_int, "layers": positive_int,
}, extra=_one_loss_and_known_tasks)  # fmt: skip
added_later(ex, {"prior": 0.0, "prior_components": 50, "layers": 1})  # runs recorded before these keys had none of them


@ex.main
def main(_run, _seed, data, second_task, solver, size, init_high, hidden, layers, sigma2, weight_decay, noise, trace, epochs,
         batch_size, lr, lr_decay, rho, rho_max, diversity, prior, prior_components, inner_steps, inner_lr, cg_iterations,
         damping, eval_every, retrain_steps, retrain_lr, eval_seeds, snapshots):  # fmt: skip
    begin_run(_run, _seed, "cpu")  # small dense problems: the CPU is the right device
    tasks = [data["name"]] + ([second_task] if second_task else [])
    real = [load_task(name, data["train_size"], data["test_size"], _seed) for name in tasks]
    spec = InnerSpec(hidden, sigma2, weight_decay, noise, trace, layers)
    schedule = Schedule(epochs, batch_size, lr, lr_decay, rho, rho_max, eval_every, retrain_steps, retrain_lr,
                        eval_seeds, snapshots)  # fmt: skip
    record_data(_run, get_spec(tasks[0]), train_images=[len(t.train_x) for t in real],
                test_images=[len(t.test_x) for t in real], dataset=" + ".join(tasks),
                data_source="; ".join(t.source for t in real))  # fmt: skip
    if solver == "baselines":
        results = score_baselines(spec, real[0], size, schedule, _seed, _run.log_scalar)
        print(f"distill baselines run {_run._id} ({real[0].name}, |D| = {size}): random subset "
              f"{results[names.RANDOM_SUBSET_TEST_ACCURACY]:.2%} (mean of {eval_seeds}), all {len(real[0].train_x)} "
              f"real {results[names.ALL_REAL_TEST_ACCURACY]:.2%}, random features "
              f"{results[names.RANDOM_FEATURES_TEST_ACCURACY]:.2%}, pixels {results[names.PIXELS_TEST_ACCURACY]:.2%}; "
              f"protocol (a)'s ceiling (supervised, no D) {results[names.SUPERVISED_TEST_ACCURACY]:.2%}; "
              f"recorded in {run_location(_run)}")  # fmt: skip
        return results

    fitted = GaussianPrior.fit(torch.cat([t.train_x for t in real]), prior_components) if prior > 0 else None
    distiller = Distiller(solver, spec, real, size, lr=lr, init_high=init_high, diversity_weight=diversity, rho=rho,
                          inner_steps=inner_steps, inner_lr=inner_lr, cg_iterations=cg_iterations, damping=damping,
                          prior=fitted, prior_weight=prior, seed=_seed)  # fmt: skip
    history, protocol_b = distill(distiller, real, schedule, _seed, _run.log_scalar, desc=f"distill ({solver})")
    w = distiller.w
    # The text's ambiguity (w_base D = w_base Q Q^-1 D), measured on the final D: see lfr_report.distill.ambiguity.
    measured = ambiguity.check(spec, distiller.D, w, real[0], lambda x, seed: retrained_accuracy(
        spec, x, real[0], retrain_steps, retrain_lr, seed)[0], _seed)  # fmt: skip
    for name, value in measured.items():
        _run.log_scalar(name, value)
    upper = {
        f"{n}_{i}": t.detach() for i, layer in enumerate(distiller.upper, 2) for n, t in zip("Wba", layer, strict=True)
    }
    add_npz_artifact(_run, names.DISTILLED, D=distiller.D.detach(), snapshots=torch.stack(list(history.values())),
                     snapshot_epochs=np.array(list(history)), W=w.W.detach(), b=w.b.detach(), a=w.a.detach(),
                     **upper)  # fmt: skip
    course = distiller.course_accuracy()
    print(f"distill run {_run._id} ({solver}, |D| = {size}, {', '.join(tasks)}): protocol (a) "
          f"{', '.join(f'{a:.2%}' for a in course)}, protocol (b) {', '.join(f'{a:.2%}' for a in protocol_b.values())} "
          f"(mean of {eval_seeds} refits); D and w in {run_location(_run)}")  # fmt: skip
    return {names.COURSE_TEST_ACCURACY: course[0], names.RETRAINED_TEST_ACCURACY: protocol_b[real[0].name]}


if __name__ == "__main__":
    run_commandline(ex)

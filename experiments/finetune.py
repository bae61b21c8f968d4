"""Fine-tuning a stored encoder with few labels, or the same architecture from scratch.

    python experiments/finetune.py with encoder_run=12                   # pretrained, every fraction and seed
    python experiments/finetune.py with encoder_run=12 init=scratch      # same network, fresh weights
    python experiments/finetune.py with smoke encoder_run=3

For each label fraction (1, 5, 10, 50 and 100% by default) and each seed, a stratified
labelled subset of the evaluation data set's training split is drawn (fixed per seed:
the pretrained and the scratch runs see the same images), the encoder and a new linear
head are trained together on it (``lfr_report.evaluate.finetune``: the SimCLR example's
SGD recipe) and scored on the whole test split. ``test_accuracy_<p>pct`` is logged once
per seed (step = the seed's index); the result keeps each fraction's mean and standard
deviation. ``init=scratch`` at 100% is the fully supervised baseline.

The evaluation data set defaults to the one the encoder's run evaluated on (a SimCLR
run's ``transfer``), its images brought to the encoder's input shape and normalised with
the pretraining data set's statistics, as the linear evaluation does.
"""

from __future__ import annotations

# isort: off
import lfr_report  # noqa: F401  (first: it silences the warning Sacred's import of pkg_resources prints)

# isort: on
from pathlib import Path

import numpy as np
import torch
from sacred import Experiment

from lfr_report.data import get_spec, load_dataset
from lfr_report.data.augment import fit_to_shape
from lfr_report.errors import ConfigError
from lfr_report.evaluate.finetune import fine_tune, stratified_subset
from lfr_report.models import build_encoder
from lfr_report.tracking import open_store, run_commandline
from lfr_report.tracking.artifacts import read_encoder
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

INITS = ("pretrained", "scratch")

ex = Experiment("finetune", base_dir=str(Path(__file__).resolve().parents[1]))


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: the scale of the encoder run it starts from
    seed = 0  # Sacred's seed; the fractions' subsets and inits use ``seeds``
    device = "auto"  # auto | cpu | cuda
    encoder_run = None  # id of the run whose encoder.pt is fine-tuned (or, init=scratch, whose architecture is)
    init = "pretrained"  # pretrained: start from that encoder | scratch: same architecture, fresh weights
    dataset = None  # labelled data set; None: the encoder run's ``transfer`` (else its own data set)
    train_size = None  # labelled training images to draw the fractions from (None: the whole training split)
    test_size = None  # test images scored (None: the whole test split)
    fractions = [0.01, 0.05, 0.1, 0.5, 1.0]  # labelled share of the training split, stratified by class
    seeds = [0, 1, 2, 3]  # one subset, init and batch order per seed (the example averages four)
    epochs = 5  # passes over the labelled subset (the example: 180 on CIFAR-10, for a GPU)
    min_steps = 100  # at least this many SGD steps, so the 1% subset is not left at a handful of updates
    batch_size = 128  # the example's batch
    lr = 0.1  # SGD learning rate, times 0.1 at 100/180 and 150/180 of the steps (the example's schedule)
    momentum = 0.9  # SGD momentum (the example's)
    weight_decay = 1e-4  # SGD weight decay (the example's)
    channels_last = True  # NHWC memory layout: faster convolutions on CPUs and tensor cores


@ex.named_config
def smoke():
    scale = "smoke"  # seconds: one epoch, a few steps, two seeds
    seeds = [0, 1]
    train_size = 512
    test_size = 256
    epochs = 1
    min_steps = 5


@ex.named_config
def default():
    scale = "default"


@ex.named_config
def full():
    scale = "full"  # the example's 180 epochs (for a GPU)
    epochs = 180
    min_steps = 0
# fmt: on


@ex.config_hook
def check(config, command_name, logger):
    """Impossible values fail before a run is recorded."""
    if config["encoder_run"] is None:
        raise ConfigError("name the encoder to fine-tune: encoder_run=<run id> (see `lfr runs --experiment simclr`)")
    if config["init"] not in INITS:
        raise ConfigError(f"unknown init {config['init']!r}; use one of {', '.join(INITS)}")
    if not config["fractions"] or any(not 0 < f <= 1 for f in config["fractions"]):
        raise ConfigError(f"fractions must be a non-empty list of values in (0, 1], got {config['fractions']!r}")
    if not config["seeds"]:
        raise ConfigError("seeds must list at least one seed")
    for key in ("epochs", "batch_size"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}")
    if config["lr"] <= 0 or config["min_steps"] < 0:
        raise ConfigError("lr must be > 0 and min_steps >= 0")
    return {}


def fraction_key(fraction: float) -> str:
    """0.01 -> '1pct': the fraction's part of a metric name."""
    return f"{100 * fraction:g}pct"


@ex.main
def main(_run, _seed, device, encoder_run, init, dataset, train_size, test_size, fractions, seeds, epochs, min_steps, batch_size, lr, momentum,
         weight_decay, channels_last):  # fmt: skip
    device = begin_run(_run, _seed, device)
    store = open_store()
    source = store.get(encoder_run)
    if source.status != "COMPLETED":
        raise ConfigError(f"run {encoder_run} is {source.status}, not COMPLETED: its encoder is not final")
    pretrained, arch = read_encoder(store, encoder_run)
    name = dataset or source.config.get("transfer") or source.config["data"]["name"]
    spec = get_spec(source.config["data"]["name"])  # the pretraining data: input shape and normalisation
    train, test = load_dataset(name, "train").subset(train_size), load_dataset(name, "test").subset(test_size)
    train_images, test_images = fit_to_shape(train.images, spec.shape), fit_to_shape(test.images, spec.shape)
    _run.info.update(dataset=name, data_source=train.source, encoder_experiment=source.experiment, encoder_arch=arch,
                     train_images=len(train), test_images=len(test))  # fmt: skip

    summary: dict[str, float] = {}
    for fraction in fractions:
        key = fraction_key(fraction)
        accuracies = []
        for i, seed in enumerate(seeds):
            torch.manual_seed(seed)
            encoder = build_encoder(**arch)
            if init == "pretrained":
                encoder.load_state_dict(pretrained.state_dict())
            labelled = stratified_subset(train.labels, fraction, seed)
            result = fine_tune(
                encoder, train_images[labelled], train.labels[labelled], test_images, test.labels,
                mean=spec.mean, std=spec.std, epochs=epochs, min_steps=min_steps, batch_size=batch_size, lr=lr,
                momentum=momentum, weight_decay=weight_decay, seed=seed, device=device, channels_last=channels_last,
            )  # fmt: skip
            _run.log_scalar(f"test_accuracy_{key}", result.test_accuracy, i)
            _run.log_scalar(f"train_loss_{key}", result.final_loss, i)
            accuracies.append(result.test_accuracy)
            print(f"  {init} {100 * fraction:g}% labels ({result.labelled} images), seed {seed}: "
                  f"test accuracy {100 * result.test_accuracy:.2f}%")  # fmt: skip
        summary[f"test_accuracy_{key}_mean"] = float(np.mean(accuracies))
        summary[f"test_accuracy_{key}_std"] = float(np.std(accuracies))

    headline = ", ".join(
        f"{100 * f:g}%: {100 * summary[f'test_accuracy_{fraction_key(f)}_mean']:.2f}" for f in fractions
    )
    print(f"finetune run {_run._id}: {init} {arch['name']} (run {encoder_run}) on {name}, {len(seeds)} seeds; "
          f"{headline}; results in {run_location(_run)}")  # fmt: skip
    return summary


if __name__ == "__main__":
    run_commandline(ex)

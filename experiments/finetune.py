"""Fine-tuning a stored encoder with few labels, or the same architecture from scratch.

    python experiments/finetune.py with encoder_run=12                   # pretrained, every fraction and seed
    python experiments/finetune.py with encoder_run=12 init=scratch      # same network, fresh weights
    python experiments/finetune.py with smoke encoder_run=3
    python experiments/finetune.py with pretraining encoder_run=5 frozen=True   # the pretraining report's protocol

For each label fraction (1, 5, 10, 50 and 100% by default) and each seed, a stratified
labelled subset of the evaluation data set's training split is drawn (fixed per seed:
the pretrained and the scratch runs see the same images), the encoder and a new linear
head are trained together on it (``lfr_report.evaluate.finetune``: the SimCLR example's
SGD recipe) and scored on the whole test split. ``test_accuracy_<p>pct`` is logged once
per seed (step = the seed's index); the result keeps each fraction's mean and standard
deviation. ``init=scratch`` at 100% is the fully supervised baseline. ``frozen=True`` trains the head
alone on the frozen encoder; the ``pretraining`` named config is the pretraining report's
protocol (Adam 1e-3, batch 64, 5% and 100% of a labelled pool, three seeds), and
``embed_fraction`` keeps a t-SNE of the fine-tuned network's test representations.

The evaluation data set defaults to the one the encoder's run evaluated on (a SimCLR
run's ``transfer``), its images brought to the encoder's input shape and normalised with
the pretraining data set's statistics, as the linear evaluation does.
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import get_spec, load_dataset, subset_index
from lfr_report.data.augment import fit_to_shape
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.embed import pca_2d, tsne_2d
from lfr_report.evaluate.finetune import calibrate_batch_norm, fine_tune, stratified_subset
from lfr_report.experiment import (
    added_later,
    boolean,
    checks,
    completed_run,
    dataset,
    integer,
    interval,
    list_of,
    load_encoder,
    new_experiment,
    non_negative,
    one_of,
    optional,
    positive,
    positive_int,
    record_data,
    run_number,
)
from lfr_report.models import build_encoder
from lfr_report.ssl.train import checkpoint_path, remove_checkpoints
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

INITS = ("pretrained", "scratch")

# its data set defaults to the one its encoder was evaluated on
ex = new_experiment("finetune", data=False, distributed=True)


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: the scale of the encoder run it starts from
    seed = 0  # Sacred's seed; the fractions' subsets and inits use ``seeds``
    device = "auto"  # auto | cpu | cuda
    encoder_run = None  # id of the run whose encoder.pt is fine-tuned (or, init=scratch, whose architecture is)
    init = "pretrained"  # pretrained: start from that encoder | scratch: same architecture, fresh weights
    data = {"name": None, "train_size": 10000, "test_size": None}  # name: the labelled data set (None: the encoder run's transfer, else its data set); train_size: the labelled pool the fractions are drawn from (CPU scale: 10,000, so 1% is 100 labels; full: the whole split); test_size: test images scored (None: the whole split)
    fractions = [0.01, 0.1, 1.0]  # labelled share of the pool, stratified by class (CPU scale: the three the conclusions rest on; full: the example's five)
    seeds = [0, 1, 2]  # one subset, init and batch order per seed (CPU scale: three; a fourth moved no mean by more than its std, measured; full: the example's four)
    epochs = 5  # passes over the labelled subset (the example: 180 on CIFAR-10, for a GPU)
    min_steps = 100  # at least this many SGD steps, so the 1% subset is not left at a handful of updates
    batch_size = 128  # the example's batch
    lr = 0.1  # SGD learning rate, times 0.1 at 100/180 and 150/180 of the steps (the example's schedule)
    momentum = 0.9  # SGD momentum (the example's)
    weight_decay = 1e-4  # SGD weight decay (the example's)
    channels_last = True  # NHWC memory layout: faster convolutions on CPUs and tensor cores
    frozen = False  # True: only the linear head is trained, on the frozen encoder (a linear probe)
    optimizer = "sgd"  # sgd (with momentum and the step schedule) | adam (lr as given, the same schedule)
    head_layers = 1  # 1: a linear head (the first example) | 3: the second example's three fully connected layers
    head_hidden = 200  # width of the head's hidden layers when head_layers > 1 (the example does not say; DIM's 200)
    embed_fraction = None  # a fraction whose first seed's fine-tuned test representations are kept (t-SNE), or None
    tsne_points = 2000  # test representations embedded with t-SNE when embed_fraction is set


@ex.named_config
def smoke():
    scale = "smoke"  # seconds: one epoch, a few steps, two seeds
    seeds = [0, 1]
    data = {"train_size": 512, "test_size": 256}
    epochs = 1
    min_steps = 5


@ex.named_config
def pretraining():
    # the pretraining report's classifiers (the lfr2024 seed's second example): Adam, batch 64
    fractions = [0.05, 1.0]  # 5% and 100% of the labels
    seeds = [0, 1, 2]  # mean +- std over three
    optimizer = "adam"
    lr = 1e-3  # the example's baseline: Adam 1e-3
    batch_size = 64  # the example's baseline
    weight_decay = 0.0
    head_layers = 3  # the example's baseline: "three fully-connected layers classification head"
    data = {"train_size": 5000}  # the labelled pool (CPU scale; `full` takes the whole split)


@ex.named_config
def pretraining_full():
    # after `pretraining full`: the second example's classifiers at its own setting (not the first example's 180 epochs
    # and five fractions, which `full` sets): 20 epochs of Adam, 5% and 100% of the labels
    fractions = [0.05, 1.0]
    seeds = [0, 1, 2]
    epochs = 20


@ex.named_config
def full():
    scale = "full"  # the example's 180 epochs (for a GPU), the whole training split
    data = {"train_size": None}
    fractions = [0.01, 0.05, 0.1, 0.5, 1.0]  # the example's Table 2
    seeds = [0, 1, 2, 3]  # the example's four
    epochs = 180
    min_steps = 0


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    epochs = 1
    seeds = [0, 1]
    tsne_points = 64
# fmt: on


checks(ex, {
    "encoder_run": optional(run_number), "data.name": optional(dataset), "momentum": interval("[0, 1)"),
    "weight_decay": non_negative, "channels_last": boolean, "frozen": boolean,
    "init": one_of(*INITS), "fractions": list_of(interval("(0, 1]")), "seeds": list_of(integer), "epochs": positive_int,
    "batch_size": positive_int, "lr": positive, "min_steps": non_negative, "data.train_size": optional(positive_int),
    "data.test_size": optional(positive_int), "optimizer": one_of("sgd", "adam"),
    "embed_fraction": optional(interval("(0, 1]")), "tsne_points": positive_int, "head_layers": positive_int,
    "head_hidden": positive_int,
})  # fmt: skip
added_later(ex, {"head_layers": 1, "head_hidden": 200})  # runs recorded before these keys trained a linear head


@ex.config_hook
def resolve_data(config, command_name, logger):
    """The encoder's run must have COMPLETED; ``data.name`` defaults to the data set it was evaluated on."""
    if config["encoder_run"] is None:
        raise ConfigError("name the encoder to fine-tune: encoder_run=<run id> (see `lfr runs --experiment simclr`)")
    source = completed_run(config["encoder_run"])
    name = config["data"]["name"] or source.config.get("transfer") or source.config["data"]["name"]
    get_spec(name)  # an unknown name fails here
    return {"data": {"name": name}}


@ex.main
def main(_run, _config, _seed, device, encoder_run, init, data, fractions, seeds, epochs, min_steps, batch_size, lr, momentum,
         weight_decay, channels_last, frozen, optimizer, head_layers, head_hidden, embed_fraction, tsne_points):  # fmt: skip
    device = begin_run(_run, _seed, device)
    source = completed_run(encoder_run)
    pretrained, arch = load_encoder(encoder_run)
    spec = get_spec(source.config["data"]["name"])  # the pretraining data: input shape and normalisation
    train = load_dataset(data["name"], "train").subset(data["train_size"])
    test = load_dataset(data["name"], "test").subset(data["test_size"])
    train_images, test_images = fit_to_shape(train.images, spec.shape), fit_to_shape(test.images, spec.shape)
    record_data(_run, train.spec, dataset=train.name, data_source=train.source, encoder_experiment=source.experiment,
                encoder_arch=arch, train_images=len(train), test_images=len(test))  # fmt: skip

    summary: dict[str, float] = {}
    for fraction in fractions:
        accuracies = []
        for i, seed in enumerate(seeds):
            torch.manual_seed(seed)
            encoder = build_encoder(**arch)
            if init == "pretrained":
                encoder.load_state_dict(pretrained.state_dict())
            labelled = stratified_subset(train.labels, fraction, seed)
            if frozen and init == "scratch":  # the random-encoder baseline: its batch norms' statistics from the data
                calibrate_batch_norm(encoder, train_images[labelled], spec.mean, spec.std, device)
            result = fine_tune(
                encoder, train_images[labelled], train.labels[labelled], test_images, test.labels,
                mean=spec.mean, std=spec.std, epochs=epochs, min_steps=min_steps, batch_size=batch_size, lr=lr,
                momentum=momentum, weight_decay=weight_decay, seed=seed, device=device, channels_last=channels_last,
                frozen=frozen, optimizer=optimizer, head_layers=head_layers, head_hidden=head_hidden,
                checkpoint=checkpoint_path("finetune", _config, f"{names.fraction_key(fraction)}-seed{seed}"),
            )  # fmt: skip
            _run.log_scalar(names.fraction_accuracy(fraction), result.test_accuracy, i)
            _run.log_scalar(names.fraction_loss(fraction), result.final_loss, i)
            accuracies.append(result.test_accuracy)
            if fraction == embed_fraction and i == 0:  # the trained network's view of the test split, for a t-SNE
                features = encode(encoder, test_images, spec.mean, spec.std, device, channels_last=channels_last)
                shown = subset_index(len(test), tsne_points, seed)
                add_npz_artifact(_run, names.TEST_EMBEDDING_2D, tsne=tsne_2d(features[shown], seed=seed),
                                 pca=pca_2d(features[shown]), labels=test.labels[shown], index=shown)  # fmt: skip
            print(f"  {init} {100 * fraction:g}% labels ({result.labelled} images), seed {seed}: "
                  f"test accuracy {100 * result.test_accuracy:.2f}%")  # fmt: skip
        summary[f"{names.fraction_accuracy(fraction)}_mean"] = float(np.mean(accuracies))
        summary[f"{names.fraction_accuracy(fraction)}_std"] = float(np.std(accuracies))

    headline = ", ".join(f"{100 * f:g}%: {100 * summary[f'{names.fraction_accuracy(f)}_mean']:.2f}" for f in fractions)
    print(f"finetune run {_run._id}: {init} {arch['name']} (run {encoder_run}) on {train.name}, {len(seeds)} seeds; "
          f"{headline}; results in {run_location(_run)}")  # fmt: skip
    remove_checkpoints("finetune", _config)
    return summary


if __name__ == "__main__":
    run_commandline(ex)

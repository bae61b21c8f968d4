"""Fine-tuning with few labels: the stratified subsets, the training itself, the
experiment through Sacred and the SimCLR report built from smoke-scale runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import build_session_store, dotted, full_configs, pdf_text

from lfr_report.evaluate import finetune
from lfr_report.evaluate.finetune import MILESTONES, fine_tune, stratified_subset
from lfr_report.models import build_encoder, classifier_head
from lfr_report.report import simclr
from lfr_report.running.runner import load_experiment
from lfr_report.tracking.store import FileRunStore


def test_stratified_subset_keeps_each_class_share_and_is_fixed_by_the_seed():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate((100, 300, 50))])
    index = stratified_subset(labels, 0.1, seed=3)
    assert torch.bincount(labels[index]).tolist() == [10, 30, 5]
    assert torch.equal(index, stratified_subset(labels, 0.1, seed=3))
    assert not torch.equal(index, stratified_subset(labels, 0.1, seed=4))
    assert torch.bincount(labels[stratified_subset(labels, 0.001, seed=0)]).tolist() == [1, 1, 1]  # one per class
    assert len(stratified_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        stratified_subset(labels, 0.0, seed=0)


def _bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright horizontal bar, class 1: a vertical one, at random positions, in noise."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 12, 12, generator=g) * 60).to(torch.uint8)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(2, 10, (n,), generator=g)
    for i in range(n):
        if labels[i] == 0:
            images[i, 0, where[i], :] = 255
        else:
            images[i, 0, :, where[i]] = 255
    return images, labels


@pytest.mark.parametrize("head_layers", [1, 3])
def test_fine_tuning_learns_a_task_chance_cannot_explain(head_layers, monkeypatch):
    train_x, train_y = _bars(256, 0)
    test_x, test_y = _bars(256, 1)
    torch.manual_seed(0)
    encoder = build_encoder("convnet", 1, 8, 12, [8, 16], "avg")
    heads = []
    monkeypatch.setattr(finetune, "classifier_head", lambda *a: heads.append(classifier_head(*a)) or heads[-1])
    result = fine_tune(encoder, train_x, train_y, test_x, test_y, mean=(0.3,), std=(0.3,), epochs=1, min_steps=60,
                       batch_size=32, lr=0.05, seed=0, head_layers=head_layers, head_hidden=32, progress=False)  # fmt: skip
    assert result.steps == 60 and result.labelled == 256
    assert result.test_accuracy > 0.9, result
    linear = [m for m in heads[0].modules() if isinstance(m, torch.nn.Linear)]
    expected = [(8, 2)] if head_layers == 1 else [(8, 32), (32, 32), (32, 2)]  # the encoder's 8 dimensions in
    assert [(m.in_features, m.out_features) for m in linear] == expected


def test_every_step_takes_a_whole_batch():
    train_x, train_y = _bars(100, 0)
    encoder = build_encoder("convnet", 1, 8, 12, [4], "avg")
    result = fine_tune(encoder, train_x, train_y, train_x[:10], train_y[:10], mean=(0.3,), std=(0.3,), epochs=2,
                       batch_size=32, seed=0, progress=False)  # fmt: skip
    assert result.steps == 6  # 3 batches of 32 an epoch; the 4 left over rotate with the reshuffling
    small = fine_tune(encoder, train_x[:20], train_y[:20], train_x[:10], train_y[:10], mean=(0.3,), std=(0.3,),
                      epochs=2, batch_size=32, seed=0, progress=False)  # fmt: skip
    assert small.steps == 2 and small.labelled == 20  # fewer images than a batch: one batch of all of them


@pytest.fixture(scope="session")
def simclr_runs(tmp_path_factory) -> Path:
    """A file store with every smoke-scale run the SimCLR report needs."""
    return build_session_store(tmp_path_factory.mktemp("simclr") / "runs", simclr.REPORT.gather)


def test_a_run_logs_every_fraction_once_per_seed(simclr_runs):
    store = FileRunStore(simclr_runs)
    pretrained = store.latest("finetune", {"init": "pretrained"})
    scratch = store.latest("finetune", {"init": "scratch", "encoder_run": pretrained.config["encoder_run"]})
    assert pretrained.config["scale"] == "smoke" and pretrained.info["encoder_experiment"] == "simclr"
    metrics = store.metrics(pretrained.id)
    assert pretrained.config["fractions"] == [0.01, 0.1, 1.0]  # the CPU scales' three (full: the example's five)
    for key in ("1pct", "10pct", "100pct"):
        assert metrics[f"test_accuracy_{key}"].steps == [0, 1], key
        assert pretrained.result[f"test_accuracy_{key}_mean"] == pytest.approx(
            sum(metrics[f"test_accuracy_{key}"].values) / 2)  # fmt: skip
    # the same labelled images and training length for both inits, different starting weights
    assert {k: v for k, v in scratch.config.items() if k != "init"} == {
        k: v for k, v in pretrained.config.items() if k != "init"
    }
    assert store.metrics(scratch.id)["test_accuracy_100pct"].values != metrics["test_accuracy_100pct"].values


def test_report_has_the_example_reports_tables_from_the_runs(simclr_runs, isolated):
    root = isolated / "runs"
    shutil.rmtree(root)
    shutil.copytree(simclr_runs, root)
    store = FileRunStore(root)
    out = simclr.REPORT.build(store, "smoke", isolated / "reports" / "simclr.pdf")
    pages, text = pdf_text(out)
    assert 2 <= pages <= 8
    order = ["1. CNN architectures", "2. Backbone pretraining", "SimCLR [1]", "InfoNCE loss [2]", "Figure 1. Data augmentation",
             "Figure 2. The SimCLR framework [1]", "3.2 Linear evaluation", "Table 1.", "3.3 Semi-supervised learning",
             "Table 2.", "References", "A simple framework for contrastive learning", "contrastive predictive coding",
             "Deep residual learning"]  # fmt: skip
    positions = [text.index(heading) for heading in order]  # every part there, in the example's order
    assert positions == sorted(positions)
    runs = simclr.REPORT.gather(store, "smoke")
    config = runs["convnet"].config  # the framework's caption gives the run's own sizes
    joined = text.replace("- ", "-")  # a hyphen at a line's end
    assert (
        f"{config['encoder_dim']}-dimensional here" in joined and f"({config['projector_dim']}-dimensional)" in joined
    )
    mean, std = store.metrics(runs["convnet"].id)["transfer_probe_test_accuracy"].mean_std()
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text  # Table 1 holds the run's own numbers
    mean, std = store.metrics(runs["convnet_scratch"].id)["test_accuracy_1pct"].mean_std()
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text  # and Table 2 too
    assert len(store.runs()) == 6  # nothing was rerun


def test_finetune_needs_an_encoder_and_a_known_init(isolated):
    ex = load_experiment("finetune")
    with pytest.raises(Exception, match="name the encoder to fine-tune"):
        ex.run(named_configs=["smoke"], options={"--loglevel": "ERROR"})
    with pytest.raises(Exception, match="init must be pretrained or scratch, got 'random'"):
        ex.run(named_configs=["smoke"], config_updates={"encoder_run": 1, "init": "random"},
               options={"--loglevel": "ERROR"})  # fmt: skip
    assert not list((isolated / "runs").iterdir())


def test_the_cpu_scale_compares_the_convnet_alone_and_smoke_and_full_both_backbones():
    def keys(scale: str) -> list[str]:
        return [need.key for need in simclr.REPORT.needs(scale)]

    assert keys("default") == ["convnet", "convnet_pretrained", "convnet_scratch"]
    for scale in ("smoke", "full"):
        assert keys(scale) == [*keys("default"), "resnet", "resnet_pretrained", "resnet_scratch"]


# The first example report's settings (lfr2024 seed, example 1), written once.
EXAMPLE = {
    "simclr": {"data.name": "tiny_imagenet", "transfer": "cifar10", "epochs": 100, "probe_seeds": [0, 1, 2, 3],
               # linear evaluation: frozen backbone, a linear layer, SGD momentum 0.9, wd 1e-3, batch 64, lr 1e-3
               "probe.optimizer": "sgd", "probe.momentum": 0.9, "probe.weight_decay": 1e-3, "probe.batch_size": 64,
               "probe.lr": 1e-3, "probe.epochs": 100, "probe.schedule": "constant", "probe.whiten": False},
    # the supervised baseline and fine-tuning: 180 epochs, SGD 0.9, wd 1e-4, batch 128, lr 0.1 x 0.1 at 100 and 150
    "finetune": {"epochs": 180, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                 "lr": 0.1, "fractions": [0.01, 0.05, 0.1, 0.5, 1.0], "seeds": [0, 1, 2, 3], "data.train_size": None},
}  # fmt: skip


def test_the_reports_full_runs_have_the_examples_settings(monkeypatch):
    configs = full_configs(simclr.REPORT, monkeypatch)
    assert len(configs) == 6  # ConvNet and ResNet: pretraining, fine-tuned, from scratch
    for key, config in configs.items():
        experiment = "finetune" if "init" in config else "simclr"
        for name, value in EXAMPLE[experiment].items():
            assert dotted(config, name) == value, (key, name, dotted(config, name))
    assert [round(m * 180) for m in MILESTONES] == [100, 150]  # the learning rate's two drops, in epochs

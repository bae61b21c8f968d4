"""The ``full`` path rehearsed on these CPUs: every experiment's ``rehearsal`` named config
keeps all of ``full`` but sizes, every report builds from such runs on CIFAR-10 (and
STL-10, MNIST, Fashion-MNIST) files in their real formats, and a ``full`` report without
CIFAR-10 on disk stops before any run with the line that says how to get it."""

from __future__ import annotations

import re

import pytest
from helpers import pdf_text, report_numbers, write_full_data

from lfr_report.cli import main
from lfr_report.registry import REPORTS, report
from lfr_report.report.document import report_options
from lfr_report.running.preflight import named_datasets
from lfr_report.running.runner import expected_config, load_experiment
from lfr_report.tracking.store import FileRunStore, flatten_config

# What `rehearsal` may change: sizes (images, steps, epochs, seeds, points shown) and the scale's name.
SIZES = {
    "scale", "data.train_size", "data.test_size", "epochs", "batch_size", "tsne_points", "probe.epochs", "images",
    "unlabelled", "labelled", "classifier_epochs", "classifier_seeds", "probe_epochs", "probe_seeds", "dim_epochs",
    "dae_epochs", "eval_every", "retrain_steps", "eval_seeds", "snapshots", "seeds", "silhouette_points",
    "images_seen", "knn_k",  # the methods' budget, and the kNN's neighbours: no more than the 128 images there are
}  # fmt: skip
STANDALONE = ("vicreg", "eigenmaps", "simclr", "autoencoder", "clip", "pretrain", "distill", "methods")  # fmt: skip


@pytest.mark.parametrize("experiment", STANDALONE)
def test_rehearsal_changes_only_sizes_of_full(experiment):
    ex = load_experiment(experiment)
    full = flatten_config(expected_config(ex, ["full"]))
    rehearsal = flatten_config(expected_config(ex, ["full", "rehearsal"]))
    changed = {key for key in full.keys() | rehearsal.keys() if full.get(key) != rehearsal.get(key)}
    assert changed <= SIZES, changed - SIZES
    assert rehearsal["scale"] == "full rehearsal" and "epochs" in " ".join(changed)


def test_the_rebuild_options_of_a_rehearsal_scale_say_rehearse():  # the rebuild itself: the test below
    assert report_options("full rehearsal") == "--scale full --rehearse"
    assert report_options("default") == "--scale default"


def test_named_datasets_finds_every_data_set_a_config_names():
    config = {"data": {"name": "cifar10", "train_size": None}, "transfer": "stl10", "encoder": "resnet18",
              "anomaly_data": "mnist", "tasks": ["cifar10", "fashion_mnist"]}  # fmt: skip
    assert named_datasets(config) == ["cifar10", "stl10", "mnist", "fashion_mnist"]


def test_full_report_without_cifar10_stops_before_any_run(isolated, capsys, monkeypatch):
    from sacred import Experiment

    from lfr_report.running import launch

    started = []  # every way a run begins: an inline Sacred run, the launcher
    monkeypatch.setattr(Experiment, "run", lambda *a, **k: started.append("sacred run"))
    monkeypatch.setattr(launch, "launch", lambda *a, **k: started.append("launch"))
    assert main(["report", "all", "--scale", "full", "--no-download", "--out", str(isolated / "reports")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: dataset 'cifar10' not found")
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err
    assert f"unpack it into {isolated / 'data'}/" in err and str(isolated / "data" / "cifar-10-batches-py") in err
    assert "stl10_binary.tar.gz" in err  # every missing data set in the same line, not one per attempt
    assert FileRunStore(isolated / "runs").runs() == [] and not (isolated / "reports").exists()
    assert started == []  # the data check comes before any run, inline or launched


def test_rehearsal_data_on_disk_passes_the_check(isolated, capsys):
    write_full_data(isolated / "data")
    from lfr_report.running.preflight import check_data

    for name in REPORTS:
        check_data(report(name).needed("full", rehearse=True))  # raises if a data set the runs name is missing


@pytest.mark.rehearsal
@pytest.mark.parametrize("name", list(REPORTS))
def test_report_builds_from_full_rehearsal_runs(name, isolated):
    write_full_data(isolated / "data")
    store = FileRunStore(isolated / "runs")
    out = report(name).build(store, "full", isolated / "reports" / f"{name}.pdf", rehearse=True)
    pages, text = pdf_text(out)
    assert pages >= 2
    runs = store.runs()
    assert runs and all(run.status == "COMPLETED" for run in runs)
    assert all(run.config["scale"] == "full rehearsal" for run in runs)
    assert "full rehearsal scale" in text and f"report {name} --scale full --rehearse" in text
    figures = [n for n in range(1, 40) if f"Figure {n}." in text]
    tables = [n for n in range(1, 40) if f"Table {n}." in text]
    assert figures == list(range(1, len(figures) + 1)) and len(figures) >= 2, figures
    assert tables == list(range(1, len(tables) + 1)), tables
    assert (len(figures), len(tables)) == EXPECTED_ITEMS[name]
    for fact in FACTS.get(name, ()):  # what a report got wrong when its data was not the default's
        assert fact in text
    assert not re.search(r"−[\d.]+ points (above|better)", text)  # a gain is written without a minus sign
    # the first page's rebuild command rehearses again: it finds every rehearsal run, runs nothing, same numbers
    rebuild = re.search(rf"python -m lfr_report (report {name} --scale full --rehearse)", text).group(1).split()
    assert main([*rebuild, "--no-download", "--out", str(isolated / "again.pdf")]) == 0
    assert [run.id for run in FileRunStore(isolated / "runs").runs()] == [run.id for run in runs]
    assert report_numbers(isolated / "again.pdf") == report_numbers(out)


# Figures and tables of each report: the same as at smoke and default scale (none dropped at full).
EXPECTED_ITEMS = {
    "vicreg": (12, 6),
    "distillation": (7, 7),  # ... the prior run's D; the ambiguity check
    "simclr": (4, 2),  # the augmented views, the framework, the pretraining curves, the fractions
    "autoencoder": (5, 2),
    "pretraining": (3, 2),
    "methods": (5, 1),  # two figures of curves, accuracy against time, two of t-SNE panels; the one results table
}
FACTS = {
    # the eigenmaps' graph holds the images there are (150 in CIFAR-10's five batches here), not `images`' 200
    "vicreg": ["150 training images embedded"],
    # the image-text model runs on its own data set (Fashion-MNIST), not the autoencoder's STL-10
    "autoencoder": ['"dogs in the park" names no class of Fashion-MNIST', "fresh weights on Fashion-MNIST"],
    # SimCLR and the pretraining report follow their examples at full: Tiny ImageNet, then CIFAR-10
    "simclr": [  # the data sets cited from the references: SimCLR, CPC, ResNet, then the data sets the runs read
        "training images of tiny_imagenet [4], labels unused (as the example does; this run transfers to cifar10, "
        "its images brought to the pretraining images' shape)",
        "Y. Le and X. Yang. Tiny ImageNet visual recognition challenge",
    ],
    # at full the table quotes the published CIFAR-10 figures and says where the budget differs
    "methods": [
        "Published",
        "92.07% linear, 1000 epochs [",
        "91.0% kNN, 800 epochs [",
        "not a reproduction of those numbers",
        "training images of cifar10 [",
    ],
    "pretraining": [
        "classifies CIFAR-10, and so does this run",
        "images of Tiny ImageNet's training split",
        "training split of CIFAR-10",
    ],
}

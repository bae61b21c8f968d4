"""The SimCLR transfer report, after the example report of the lfr2024 seed ("WASP Learning
Feature Representations Module 1"): two backbones pretrained with SimCLR, evaluated on
another data set by linear evaluation (its Table 1) and by fine-tuning with 1-100% of
the labels against the same network trained from scratch (its Table 2).

Runs it needs, found in the store or run (each at the report's scale):

=====================  ==================================================================
pretraining            ``simclr with <scale>`` (ConvNet) and ``simclr with <scale> resnet``
fine-tuning            ``finetune with <scale> encoder_run=<id>`` and ``... init=scratch``
=====================  ==================================================================

The fully supervised baseline of Table 1 is the scratch run at 100% of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from lfr_report.data import get_spec, load_dataset
from lfr_report.data.augment import Augment, AugmentParams
from lfr_report.models import build_encoder
from lfr_report.report import figures
from lfr_report.report.document import Document, run_summary
from lfr_report.report.notes import read_note
from lfr_report.report.render import render_html, write_pdf
from lfr_report.report.runner import find_or_run
from lfr_report.tracking.artifacts import read_torch
from lfr_report.tracking.store import Run, RunStore, run_key

BACKBONES = {"convnet": ("ConvNet", []), "resnet": ("ResNet", ["resnet"])}  # key -> (name, named configs)
NOTE_KEYS = ("pretraining", "linear", "semi-supervised", "conclusions")
PAIRS_SHOWN = 8


@dataclass(frozen=True)
class Backbone:
    name: str
    pretrain: Run
    pretrained: Run  # fine-tuning from the pretrained encoder
    scratch: Run  # the same architecture from fresh weights


def gather_runs(store: RunStore, scale: str) -> dict[str, Backbone]:
    """Find every run the report needs, running those the store lacks."""
    found = {}
    for key, (name, named) in BACKBONES.items():
        pretrain = find_or_run(store, "simclr", [scale, *named])
        tuned = {init: find_or_run(store, "finetune", [scale], {"encoder_run": run_key(pretrain.id), "init": init})
                 for init in ("pretrained", "scratch")}  # fmt: skip
        found[key] = Backbone(name, pretrain, tuned["pretrained"], tuned["scratch"])
    return found


def roles(backbones: dict[str, Backbone]) -> list[tuple[Run, str]]:
    listed = []
    for b in backbones.values():
        listed += [(b.pretrain, f"{b.name}: SimCLR pretraining, linear evaluation"),
                   (b.pretrained, f"{b.name}: fine-tuning the pretrained encoder"),
                   (b.scratch, f"{b.name}: the same network from scratch")]  # fmt: skip
    return listed


def build(store: RunStore, scale: str, out: Path) -> Path:
    """Find (or run) every run of the SimCLR report at ``scale`` and write the PDF to ``out``."""
    backbones = gather_runs(store, scale)
    first = next(iter(backbones.values()))
    doc = Document(title="SimCLR pretraining and transfer with few labels", report="simclr")
    context = {
        "doc": doc,
        "run": first.pretrain,
        "tuned": first.pretrained,
        "runs": [{**run_summary(run), "role": role} for run, role in roles(backbones)],
        "notes": {key: read_note("simclr", key) for key in NOTE_KEYS},
        **report_sections(store, backbones, doc),
    }
    return write_pdf(render_html("simclr.html", context), out)


def report_sections(store: RunStore, backbones: dict[str, Backbone], doc: Document) -> dict[str, Any]:
    """Tables, figures and result sentences, in the order the template shows them."""
    metrics = {
        run.id: store.metrics(run.id) for b in backbones.values() for run in (b.pretrain, b.pretrained, b.scratch)
    }
    fractions = next(iter(backbones.values())).pretrained.config["fractions"]
    keys = [f"{100 * f:g}pct" for f in fractions]
    seeds = len(next(iter(backbones.values())).pretrained.config["seeds"])

    architectures = []
    for b in backbones.values():
        saved = read_torch(store, b.pretrain.id, "encoder.pt")
        encoder = build_encoder(**saved["arch"])
        architectures.append({"name": b.name, "arch": saved["arch"], "run": b.pretrain.id,
                              "backbone": sum(p.numel() for p in getattr(encoder, "features", encoder).parameters()),
                              "total": sum(p.numel() for p in encoder.parameters())})  # fmt: skip

    linear_rows = []
    for b in backbones.values():
        linear = metrics[b.pretrain.id]["transfer_probe_test_accuracy"].mean_std()
        supervised = metrics[b.scratch.id]["test_accuracy_100pct"].mean_std()
        linear_rows.append({"name": b.name, "linear": linear, "supervised": supervised,
                            "runs": f"{b.pretrain.id}, {b.scratch.id}"})  # fmt: skip
    linear_table = doc.table("Linear evaluation: top-1 accuracy (%) of a linear layer on the frozen pretrained backbone, "
                             "beside the fully supervised baseline (the same network trained from scratch on all labels); "
                             f"mean ± std over {seeds} seeds.",
                             *(r for b in backbones.values() for r in (b.pretrain, b.scratch)))  # fmt: skip

    fraction_rows = []
    for fraction, key in zip(fractions, keys, strict=True):
        row: dict[str, Any] = {"fraction": fraction}
        for bkey, b in backbones.items():
            row[bkey] = {"pretrained": metrics[b.pretrained.id][f"test_accuracy_{key}"].mean_std(),
                         "scratch": metrics[b.scratch.id][f"test_accuracy_{key}"].mean_std()}  # fmt: skip
        fraction_rows.append(row)
    fraction_table = doc.table("Semi-supervised learning: top-1 accuracy (%) after fine-tuning the whole network on a "
                               "stratified fraction of the labels, from the SimCLR weights ('Pre-trained') and from "
                               f"scratch ('Supervised'); mean ± std over {seeds} seeds, the same labelled subsets for both.",
                               *(r for b in backbones.values() for r in (b.pretrained, b.scratch)))  # fmt: skip

    findings = []
    for bkey, b in backbones.items():
        low = fraction_rows[0][bkey]
        gap = low["pretrained"][0] - low["scratch"][0]
        crossing = next(
            (r["fraction"] for r in fraction_rows if r[bkey]["pretrained"][0] <= r[bkey]["scratch"][0]), None
        )
        findings.append({"name": b.name, "gap_low": gap, "crossing": crossing,
                         "gap_full": fraction_rows[-1][bkey]["pretrained"][0] - fraction_rows[-1][bkey]["scratch"][0]})  # fmt: skip

    figs = {
        "views": _views_figure(backbones["convnet"].pretrain, doc),
        "curves": _pretraining_curves(backbones, metrics, doc),
        "fractions": _fraction_figure(backbones, fraction_rows, seeds, doc),
    }
    return {"architectures": architectures, "linear_rows": linear_rows, "linear_table": linear_table,
            "fraction_rows": fraction_rows, "fraction_table": fraction_table, "backbone_keys": list(backbones),
            "backbone_names": {k: b.name for k, b in backbones.items()}, "findings": findings, "figures": figs,
            "seeds": seeds,
            "channels": get_spec(next(iter(backbones.values())).pretrain.config["data"]["name"]).channels}  # fmt: skip


def _views_figure(run: Run, doc: Document):
    """Pairs of augmented views of training images, made with the run's own augmentation config."""
    train = load_dataset(run.config["data"]["name"], "train")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in run.config["augment"].items()}
    augment = Augment(AugmentParams(**config), train.spec.mean, train.spec.std)
    generator = torch.Generator().manual_seed(run.config["seed"])
    images = train.images[torch.randperm(len(train), generator=generator)[:PAIRS_SHOWN]]
    mean, std = augment.mean, augment.std

    def shown(x: torch.Tensor) -> np.ndarray:
        return ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    rows = [list(images.numpy()), list(shown(augment(images, generator))), list(shown(augment(images, generator)))]
    fig = figures.image_grid(rows, row_labels=["image", "view 1", "view 2"], cell_in=0.55)
    return doc.figure(figures.to_data_uri(fig, "png"),
                      f"Data augmentation: {PAIRS_SHOWN} training images of {train.name} and two random views of each, "
                      "made by the pretraining run's augmentation settings.", run, width=70)  # fmt: skip


def _pretraining_curves(backbones: dict[str, Backbone], metrics, doc: Document):
    fig, axes = plt.subplots(1, 2, figsize=(figures.WIDTH_IN, 2.3))
    for b, color in zip(backbones.values(), ("tab:blue", "tab:orange"), strict=False):
        m = metrics[b.pretrain.id]
        per_epoch = b.pretrain.info["train_images"] // b.pretrain.config["batch_size"]
        for ax, term, label in ((axes[0], "loss", "NT-Xent loss"), (axes[1], "top1", "positive found (top-1)")):
            train, test = m[f"train_{term}"], m[f"test_{term}"]
            window = max(1, len(train.values) // 40)
            ax.plot(np.asarray(train.steps) / per_epoch, figures.moving_average(train.values, window), color=color,
                    linewidth=1.1, label=f"{b.name}, train")  # fmt: skip
            ax.plot(np.asarray(test.steps) / per_epoch, test.values, "o--", color=color, markersize=3, linewidth=0.8,
                    label=f"{b.name}, test")  # fmt: skip
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "SimCLR pretraining: the loss and the share of views whose most similar other view is their "
                      "partner, per batch (moving average) and on the test split after each epoch.",
                      *(b.pretrain for b in backbones.values()))  # fmt: skip


def _fraction_figure(backbones: dict[str, Backbone], rows: list[dict[str, Any]], seeds: int, doc: Document):
    fig, axes = plt.subplots(1, len(backbones), figsize=(figures.WIDTH_IN, 2.3), sharey=True, squeeze=False)
    x = [100 * r["fraction"] for r in rows]
    for ax, (key, b) in zip(axes[0], backbones.items(), strict=True):
        for init, color, label in (("pretrained", "tab:blue", "pre-trained"), ("scratch", "tab:gray", "from scratch")):
            means = [100 * r[key][init][0] for r in rows]
            stds = [100 * r[key][init][1] for r in rows]
            ax.errorbar(x, means, yerr=stds, fmt="o-", color=color, capsize=2, markersize=3, linewidth=1, label=label)
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}%" for v in x])
        ax.set_title(b.name)
        ax.set_xlabel("labelled share of the training split")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Fine-tuning with few labels: test accuracy against the labelled share (log scale), mean ± std "
                      f"over {seeds} seeds.", *(r for b in backbones.values() for r in (b.pretrained, b.scratch)))  # fmt: skip

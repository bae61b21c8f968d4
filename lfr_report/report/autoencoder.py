"""The autoencoder and image-text report, answering Problem Set 7 (ps7-autoencoder-clip
seed) in its order: 7.1, a convolutional autoencoder and the linear classifiers of methods
I-III (a denoising autoencoder as a fourth row); 7.2, a contrastive image-text model, its
linear probe and text-to-image retrieval.

Runs it needs, found in the store or run (each at the report's scale):

==================  =============================================================
7.1 autoencoder     ``autoencoder with <scale>`` (methods I, II, III)
7.1 denoising       ``autoencoder with <scale> denoising`` (method I on it)
7.2 image-text      ``clip with <scale>``
==================  =============================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from lfr_report.data import get_spec
from lfr_report.models.autoencoder import ConvAutoencoder
from lfr_report.report import figures
from lfr_report.report.document import Document, run_summary
from lfr_report.report.notes import read_note
from lfr_report.report.render import render_html, write_pdf
from lfr_report.report.runner import find_or_run
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Run, RunStore

NOTE_KEYS = ("autoencoder", "classifiers", "image-text", "retrieval")
METHODS = (  # (row, run key, metric kind, what it is)
    ("I", "plain", "frozen", "linear classifier on the frozen pretrained encoder"),
    ("II", "plain", "joint", "encoder (fresh weights) and linear classifier trained together"),
    ("III", "plain", "random", "linear classifier on a frozen random encoder"),
    ("IV", "denoising", "frozen", "linear classifier on the frozen denoising encoder"),
)


def gather_runs(store: RunStore, scale: str) -> dict[str, Run]:
    """Find every run the report needs, running those the store lacks."""
    return {
        "plain": find_or_run(store, "autoencoder", [scale]),
        "denoising": find_or_run(store, "autoencoder", [scale, "denoising"]),
        "clip": find_or_run(store, "clip", [scale]),
    }


def build(store: RunStore, scale: str, out: Path) -> Path:
    """Find (or run) every run of the autoencoder report at ``scale`` and write the PDF to ``out``."""
    runs = gather_runs(store, scale)
    doc = Document(title="Autoencoders and an image-text model", report="autoencoder")
    roles = [(runs["plain"], "7.1: autoencoder, classifiers I-III"),
             (runs["denoising"], "7.1: denoising autoencoder, classifier IV"),
             (runs["clip"], "7.2: image-text model, probe, retrieval")]  # fmt: skip
    context = {
        "doc": doc,
        "run": runs["plain"],
        "dae": runs["denoising"],
        "clip": runs["clip"],
        "runs": [{**run_summary(run), "role": role} for run, role in roles],
        "notes": {key: read_note("autoencoder", key) for key in NOTE_KEYS},
        **report_sections(store, runs, doc),
    }
    return write_pdf(render_html("autoencoder.html", context), out)


def report_sections(store: RunStore, runs: dict[str, Run], doc: Document) -> dict[str, Any]:
    """Tables, figures and result numbers, in the order the template shows them."""
    metrics = {key: store.metrics(run.id) for key, run in runs.items()}
    plain = runs["plain"]
    spec = get_spec(plain.config["dataset"])
    model = ConvAutoencoder(spec.channels, plain.config["image_size"], tuple(plain.config["widths"]))
    shapes = _layer_shapes(spec.channels, plain.config["image_size"], plain.config["widths"])

    methods = []
    for row, key, kind, what in METHODS:
        metric = metrics[key].get(f"accuracy_{kind}")
        if metric is not None:
            methods.append({"row": row, "what": what, "run": runs[key].id, "accuracy": metric.mean_std(),
                            "seeds": len(metric.values)})  # fmt: skip
    by_row = {m["row"]: m["accuracy"][0] for m in methods}
    methods_table = doc.table("Linear classifiers on the autoencoder's representation: test accuracy (%), mean ± std "
                              f"over {len(plain.config['classifier_seeds'])} classifier seeds.", runs["plain"],
                              runs["denoising"])  # fmt: skip

    clip_metrics = metrics["clip"]
    clip = {
        "probe": clip_metrics["probe_accuracy"].mean_std(),
        "zero_shot": clip_metrics["zero_shot_accuracy"].values[-1],
        "precision": clip_metrics["retrieval_precision"].values[-1],
        "probe_seeds": len(clip_metrics["probe_accuracy"].values),
    }
    clip_table = doc.table("The image-text model against the autoencoder: test accuracy (%) of a linear classifier on "
                           f"each frozen image representation ({plain.config['labelled']:,} and "
                           f"{runs['clip'].config['labelled']:,} labelled images), mean ± std over seeds.",
                           runs["plain"], runs["clip"])  # fmt: skip

    figs = {
        "ae_loss": _loss_figure(metrics["plain"], metrics["denoising"], runs, doc),
        "reconstructions": _reconstruction_figure(store, runs, doc),
        "methods": _methods_figure(methods, runs, doc),
        "clip_loss": _clip_curves(clip_metrics, runs["clip"], doc),
    }
    retrieval = read_npz(store, runs["clip"].id, "retrieval.npz")
    figs["retrieval"] = _retrieval_figure(retrieval, spec.classes, runs["clip"], doc)
    weights = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in ("encoder", "decoder")}
    return {
        "spec": spec,
        "shapes": shapes,
        "weights": weights,
        "code_size": model.encoder.dim,
        "methods": methods,
        "methods_table": methods_table,
        "acc": by_row,
        "i_beats_iii": by_row.get("I", 0.0) > by_row.get("III", 1.0),
        "ii_beats_i": by_row.get("II", 0.0) > by_row.get("I", 1.0),
        "iv_vs_i": by_row.get("IV", float("nan")) - by_row.get("I", float("nan")),
        "mse": {key: metrics[key]["test_loss"].values[-1] for key in ("plain", "denoising")},
        "clip_results": clip,
        "loss_floor": float(np.log(runs["clip"].config["batch_size"] / len(spec.classes))),
        "clip_table": clip_table,
        "queries": _query_rows(retrieval, spec.classes),
        "figures": figs,
    }


def _layer_shapes(channels: int, side: int, widths: list[int]) -> list[str]:
    """'C×H×W' after the input and each encoder convolution (kernel 4, stride 2, padding 1 halves the side)."""
    shapes = [f"{channels}×{side}×{side}"]
    for width in widths:
        side //= 2
        shapes.append(f"{width}×{side}×{side}")
    return shapes


def _loss_figure(plain: dict, denoising: dict, runs: dict[str, Run], doc: Document):
    fig, ax = plt.subplots(figsize=(figures.WIDTH_IN * 0.6, 2.2))
    for metrics, name, color in ((plain, "autoencoder", "tab:blue"), (denoising, "denoising", "tab:orange")):
        for split, style in (("train", "-"), ("test", "o--")):
            m = metrics[f"{split}_loss"]
            ax.plot(m.steps, m.values, style, color=color, markersize=3, linewidth=1, label=f"{name}, {split}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reconstruction MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Autoencoder training: mean squared reconstruction error per epoch, on the unlabelled training "
                      "images (epoch mean) and on the test split (the denoising model: of noisy inputs against clean "
                      "images).", runs["plain"], runs["denoising"], width=62)  # fmt: skip


def _reconstruction_figure(store: RunStore, runs: dict[str, Run], doc: Document):
    plain = read_npz(store, runs["plain"].id, "reconstructions.npz")
    noisy = read_npz(store, runs["denoising"].id, "reconstructions.npz")
    rows = [list(plain["images"]), list(plain["outputs"]), list(noisy["inputs"]), list(noisy["outputs"])]
    labels = ["test image", "autoencoder", "noisy input", "denoising AE"]
    fig = figures.image_grid(rows, row_labels=labels, cell_in=0.55)
    return doc.figure(figures.to_data_uri(fig, "png"),
                      "Reconstructions of test images the autoencoders never saw: the plain autoencoder's output, "
                      f"and the denoising autoencoder's input (noise std {runs['denoising'].config['noise_std']}) "
                      "and output.", runs["plain"], runs["denoising"], width=70)  # fmt: skip


def _methods_figure(methods: list[dict], runs: dict[str, Run], doc: Document):
    fig, ax = plt.subplots(figsize=(figures.WIDTH_IN * 0.55, 2.0))
    x = np.arange(len(methods))
    means = [100 * m["accuracy"][0] for m in methods]
    stds = [100 * m["accuracy"][1] for m in methods]
    colors = ["tab:blue", "tab:green", "tab:gray", "tab:orange"][: len(methods)]
    ax.bar(x, means, yerr=stds, capsize=3, color=colors)
    for xi, mean in zip(x, means, strict=True):
        ax.text(xi, mean + 1, f"{mean:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, [f"method {m['row']}" for m in methods])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Test accuracy of the linear classifiers (mean ± std over seeds): I frozen pretrained encoder, "
                      "II trained jointly, III frozen random encoder, IV frozen denoising encoder.",
                      runs["plain"], runs["denoising"], width=55)  # fmt: skip


def _clip_curves(metrics: dict, run: Run, doc: Document):
    fig, axes = plt.subplots(1, 2, figsize=(figures.WIDTH_IN, 2.2))
    for ax, term, label in (
        (axes[0], "loss", "contrastive loss, eq. (2)"),
        (axes[1], "top1", "own caption ranked first"),
    ):
        for split, style in (("train", "-"), ("test", "o--")):
            m = metrics[f"{split}_{term}"]
            ax.plot(m.steps, m.values, style, markersize=3, linewidth=1, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Image-text training: the symmetric loss and the share of images whose own caption is the most "
                      f"similar of the batch's {run.config['batch_size']} (epoch means on the training images; test "
                      "split after each epoch, captions drawn with a fixed seed).", run)  # fmt: skip


def _query_rows(retrieval: dict[str, np.ndarray], classes: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for q, query in enumerate(retrieval["queries"]):
        named = int(retrieval["named_class"][q])
        labels = retrieval["labels"][q]
        rows.append({"query": str(query), "class": classes[named] if named >= 0 else None,
                     "precision": float((labels == named).mean()) if named >= 0 else None,
                     "unknown": str(retrieval["unknown_words"][q]),
                     "found": ", ".join(dict.fromkeys(classes[int(y)] for y in labels))})  # fmt: skip
    return rows


def _retrieval_figure(retrieval: dict[str, np.ndarray], classes: tuple[str, ...], run: Run, doc: Document):
    queries, labels, named = retrieval["queries"], retrieval["labels"], retrieval["named_class"]
    rows = [list(images) for images in retrieval["images"]]
    notes = [[classes[int(y)][:12] for y in row] for row in labels]
    wrong = [[named[q] >= 0 and int(y) != named[q] for y in row] for q, row in enumerate(labels)]
    row_labels = [str(q) if len(str(q)) <= 34 else str(q)[:32] + "…" for q in queries]
    fig = figures.image_grid(rows, row_labels=row_labels, cell_notes=notes, highlight=wrong, cell_in=0.45)
    fig.subplots_adjust(left=0.3)
    return doc.figure(figures.to_data_uri(fig, "png"),
                      f"Text-to-image retrieval: for each query, the {run.config['top_k']} test images whose embeddings "
                      "have the highest cosine similarity with the query's, best first, each with its true class; a red "
                      "frame marks an image not of the class the query names.", run, width=80)  # fmt: skip

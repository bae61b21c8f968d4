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

from typing import Any

import numpy as np

from lfr_report import names
from lfr_report.report import figures
from lfr_report.report.document import Document
from lfr_report.report.figures import Panel, line
from lfr_report.report.spec import Need, Report, Runs
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Metric, Run, RunStore

METHODS = (  # (row, run key, classifier kind, what it is)
    ("I", "plain", "frozen", "linear classifier on the frozen pretrained encoder"),
    ("II", "plain", "joint", "encoder (fresh weights) and linear classifier trained together"),
    ("III", "plain", "random", "linear classifier on a frozen random encoder"),
    ("IV", "denoising", "frozen", "linear classifier on the frozen denoising encoder"),
)


def needs(scale: str) -> list[Need]:
    return [
        Need("plain", "autoencoder", [scale], role="7.1: autoencoder, classifiers I-III"),
        Need("denoising", "autoencoder", [scale, "denoising"], role="7.1: denoising autoencoder, classifier IV"),
        Need("clip", "clip", [scale], role="7.2: image-text model, probe, retrieval"),
    ]


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """Tables, figures and result numbers, in the order the template shows them."""
    metrics = {key: store.metrics(run.id) for key, run in runs.items()}
    plain = runs["plain"]
    spec = plain.info["data_spec"]

    methods = []
    for row, key, kind, what in METHODS:
        metric = metrics[key].get(names.classifier_accuracy(kind))
        if metric is not None:
            methods.append({"row": row, "what": what, "run": runs[key].id, "accuracy": metric.mean_std(),
                            "seeds": len(metric.values)})  # fmt: skip
    by_row = {m["row"]: m["accuracy"][0] for m in methods}
    methods_table = doc.table("Linear classifiers on the autoencoder's representation: test accuracy (%), mean ± std "
                              f"over {len(plain.config['classifier_seeds'])} classifier seeds.", runs["plain"],
                              runs["denoising"])  # fmt: skip

    clip_metrics = metrics["clip"]
    clip = {
        "probe": clip_metrics[names.CLIP_PROBE_ACCURACY].mean_std(),
        "zero_shot": clip_metrics[names.ZERO_SHOT_ACCURACY].last,
        "precision": clip_metrics[names.RETRIEVAL_PRECISION].last,
        "probe_seeds": len(clip_metrics[names.CLIP_PROBE_ACCURACY].values),
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
    retrieval = read_npz(store, runs["clip"].id, names.RETRIEVAL)
    clip_spec = runs["clip"].info["data_spec"]  # its own data set: at full, STL-10 is the autoencoder's only
    figs["retrieval"] = _retrieval_figure(retrieval, clip_spec["classes"], runs["clip"], doc)
    return {
        "run": plain,
        "dae": runs["denoising"],
        "clip": runs["clip"],
        "spec": spec,
        "clip_spec": clip_spec,
        "shapes": plain.info["layer_shapes"],
        "weights": plain.info["weights"],
        "code_size": plain.info["code_size"],
        "methods": methods,
        "methods_table": methods_table,
        "acc": by_row,
        "i_beats_iii": by_row.get("I", 0.0) > by_row.get("III", 1.0),
        "ii_beats_i": by_row.get("II", 0.0) > by_row.get("I", 1.0),
        "iv_vs_i": by_row.get("IV", float("nan")) - by_row.get("I", float("nan")),
        "mse": {key: metrics[key][names.test_metric("loss")].last for key in ("plain", "denoising")},
        "clip_results": clip,
        "loss_floor": float(np.log(runs["clip"].config["batch_size"] / len(clip_spec["classes"]))),
        "clip_table": clip_table,
        "queries": _query_rows(retrieval, clip_spec["classes"]),
        "figures": figs,
    }


REPORT = Report(
    name="autoencoder",
    title="Autoencoders and an image-text model",
    template="autoencoder.html",
    note_keys=("autoencoder", "classifiers", "image-text", "retrieval"),
    needs=needs,
    sections=sections,
)


def _train_test(metrics: dict[str, Metric], term: str, name: str = "", color: str | None = None) -> list:
    """The per-epoch training value and the test value of ``term``, as two lines."""
    prefix = f"{name}, " if name else ""
    colour = {"color": color} if color else {}
    return [line(metrics[names.train_metric(term)].steps, metrics[names.train_metric(term)].values, "-", **colour,
                 markersize=3, linewidth=1, label=f"{prefix}train"),
            line(metrics[names.test_metric(term)].steps, metrics[names.test_metric(term)].values, "o--", **colour,
                 markersize=3, linewidth=1, label=f"{prefix}test")]  # fmt: skip


def _loss_figure(plain: dict, denoising: dict, runs: Runs, doc: Document):
    lines = [
        *_train_test(plain, "loss", "autoencoder", "tab:blue"),
        *_train_test(denoising, "loss", "denoising", "tab:orange"),
    ]
    panel = Panel(lines, "epoch", "reconstruction MSE", yscale="log", legend={"fontsize": 6})
    return doc.figure(figures.to_data_uri(figures.line_panels([panel], (figures.WIDTH_IN * 0.6, 2.2)), "svg"),
                      "Autoencoder training: mean squared reconstruction error per epoch, on the unlabelled training "
                      "images (epoch mean) and on the test split (the denoising model: of noisy inputs against clean "
                      "images).", runs["plain"], runs["denoising"], width=62)  # fmt: skip


def _reconstruction_figure(store: RunStore, runs: Runs, doc: Document):
    plain = read_npz(store, runs["plain"].id, names.RECONSTRUCTIONS)
    noisy = read_npz(store, runs["denoising"].id, names.RECONSTRUCTIONS)
    rows = [list(plain["images"]), list(plain["outputs"]), list(noisy["inputs"]), list(noisy["outputs"])]
    labels = ["test image", "autoencoder", "noisy input", "denoising AE"]
    fig = figures.image_grid(rows, row_labels=labels, cell_in=0.55)
    return doc.figure(figures.to_data_uri(fig, "png"),
                      "Reconstructions of test images the autoencoders never saw: the plain autoencoder's output, "
                      f"and the denoising autoencoder's input (noise std {runs['denoising'].config['noise_std']}) "
                      "and output.", runs["plain"], runs["denoising"], width=70)  # fmt: skip


def _methods_figure(methods: list[dict], runs: Runs, doc: Document):
    fig = figures.bar_chart([f"method {m['row']}" for m in methods], [100 * m["accuracy"][0] for m in methods],
                            [100 * m["accuracy"][1] for m in methods],
                            ["tab:blue", "tab:green", "tab:gray", "tab:orange"][: len(methods)], "test accuracy (%)",
                            (figures.WIDTH_IN * 0.55, 2.0))  # fmt: skip
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Test accuracy of the linear classifiers (mean ± std over seeds): I frozen pretrained encoder, "
                      "II trained jointly, III frozen random encoder, IV frozen denoising encoder.",
                      runs["plain"], runs["denoising"], width=55)  # fmt: skip


def _clip_curves(metrics: dict, run: Run, doc: Document):
    panels = [Panel(_train_test(metrics, "loss"), "epoch", "contrastive loss, eq. (2)", legend={"fontsize": 6}),
              Panel(_train_test(metrics, "top1"), "epoch", "own caption ranked first")]  # fmt: skip
    return doc.figure(figures.to_data_uri(figures.line_panels(panels, (figures.WIDTH_IN, 2.2)), "svg"),
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

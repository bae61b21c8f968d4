"""The VICReg report (exercise acml-ex3, section 3.2): Q1 training curves, Q2 PCA vs t-SNE,
Q3 linear probe against the raw-pixel floor.

Every number comes from the run store; every figure and table names the run it
came from. Sentences that state results are written from those numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from lfr_report.data import get_spec
from lfr_report.report import figures
from lfr_report.report.document import Document, run_summary
from lfr_report.report.render import render_html, write_pdf
from lfr_report.report.runner import find_or_run
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Metric, Run, RunStore

TERMS = (
    ("invariance", "Invariance term L_inv(Z, Z')", "eq. 2"),
    ("variance", "Variance term L_var(Z) + L_var(Z')", "eq. 3"),
    ("covariance", "Covariance term L_cov(Z) + L_cov(Z')", "eq. 5"),
)
KNN_NEIGHBOURS = 10  # neighbours of the 2-D kNN classifier that scores how well a map separates classes


def build(store: RunStore, scale: str, out: Path) -> Path:
    """Find (or run) the VICReg run of ``scale`` and write its report to ``out``."""
    run = find_or_run(store, "vicreg", [scale])
    doc = Document(title="VICReg on " + get_spec(run.config["data"]["name"]).title, report="vicreg")
    context = {"doc": doc, **vicreg_sections(store, run, doc), "runs": [run_summary(run)]}
    return write_pdf(render_html("vicreg.html", context), out)


def vicreg_sections(store: RunStore, run: Run, doc: Document) -> dict[str, Any]:
    """Figures, tables and result sentences of Q1-Q3 for one VICReg run."""
    metrics = store.metrics(run.id)
    spec = get_spec(run.config["data"]["name"])
    return {
        "run": run,
        "dataset": spec,
        "q1": _q1_training(run, metrics, doc),
        "q2": _q2_embeddings(store, run, spec.classes, doc),
        "q3": _q3_probe(run, metrics, doc),
    }


def _q1_training(run: Run, metrics: dict[str, Metric], doc: Document) -> dict[str, Any]:
    steps_per_epoch = run.info.get("train_images", 0) // run.config["batch_size"] or None
    curves = []
    for term, title, equation in TERMS:
        train, test = metrics[f"train_{term}"], metrics[f"test_{term}"]
        fig = figures.train_test_curve(train.steps, train.values, test.steps, test.values, title, term, steps_per_epoch)
        curves.append(
            doc.figure(
                figures.to_data_uri(fig, "svg"),
                f"{title} ({equation}) per training batch and on the test set after each epoch.",
                run,
            )
        )
    window = max(1, steps_per_epoch or 1)
    changes = {}
    for term in ("loss", *(t for t, _, _ in TERMS)):
        values = np.asarray(metrics[f"train_{term}"].values)
        changes[term] = {
            "first": float(values[:window].mean()),
            "last": float(values[-window:].mean()),
            "test_first": metrics[f"test_{term}"].values[0],
            "test_last": metrics[f"test_{term}"].values[-1],
        }
    return {
        "figures": curves,
        "changes": changes,
        "epochs": run.config["epochs"],
        "batches": len(metrics["train_loss"].values),
        "steps_per_epoch": steps_per_epoch,
    }


def _knn_map_accuracy(points: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """5-fold cross-validated accuracy of a kNN classifier on 2-D points, and its confusion matrix."""
    k = min(KNN_NEIGHBOURS, max(1, len(points) // 5 - 1))
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=k), points, labels, cv=5)
    classes = int(labels.max()) + 1
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return float((predicted == labels).mean()), confusion


def _q2_embeddings(store: RunStore, run: Run, classes: tuple[str, ...], doc: Document) -> dict[str, Any]:
    maps = read_npz(store, run.id, "test_embedding_2d.npz")
    labels = maps["labels"]
    fig = figures.scatter_by_class([("PCA", maps["pca"]), ("t-SNE", maps["tsne"])], labels, classes)
    figure = doc.figure(
        figures.to_data_uri(fig, "png"),
        f"PCA (left) and t-SNE (right) of the VICReg representations of {len(labels):,} test images, coloured by class.",
        run,
    )
    pca_accuracy, _ = _knn_map_accuracy(maps["pca"], labels)
    tsne_accuracy, confusion = _knn_map_accuracy(maps["tsne"], labels)
    # Entangled pairs: share of each pair's images that the 2-D kNN assigns to the other class.
    per_class = confusion.sum(axis=1).clip(min=1)
    pairs = []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            mixed = (confusion[a, b] + confusion[b, a]) / (per_class[a] + per_class[b])
            pairs.append((float(mixed), classes[a], classes[b]))
    pairs.sort(reverse=True)
    return {
        "figure": figure,
        "points": len(labels),
        "pca_accuracy": pca_accuracy,
        "tsne_accuracy": tsne_accuracy,
        "better": "t-SNE" if tsne_accuracy >= pca_accuracy else "PCA",
        "entangled": [{"share": s, "a": a, "b": b} for s, a, b in pairs[:3]],
        "k": KNN_NEIGHBOURS,
    }


def _last(metrics: dict[str, Metric], name: str) -> float:
    return metrics[name].values[-1]


def _q3_probe(run: Run, metrics: dict[str, Metric], doc: Document) -> dict[str, Any]:
    spec = get_spec(run.config["data"]["name"])
    rows = [
        {
            "name": f"VICReg encoder representation ({run.config['encoder_dim']}-d)",
            "train": _last(metrics, "probe_train_accuracy"),
            "test": _last(metrics, "probe_test_accuracy"),
        },
        {
            "name": f"Raw pixels ({int(np.prod(spec.shape)):,}-d), the floor",
            "train": _last(metrics, "pixels_probe_train_accuracy"),
            "test": _last(metrics, "pixels_probe_test_accuracy"),
        },
    ]
    table = doc.table(
        f"Linear-probe accuracy on {spec.title} (one linear layer, cross-entropy, Adam, "
        f"{run.config['probe']['epochs']} epochs, encoder frozen).",
        run,
    )
    return {
        "table": table,
        "rows": rows,
        "gain": rows[0]["test"] - rows[1]["test"],
        "probe": run.config["probe"],
    }

"""The VICReg report: every question of sections 3 and 4 of the exercise (acml-ex3).

Runs it needs, found in the store or run (in this order, each at the report's scale):

============================  ==============================================================
VICReg                        ``vicreg with <scale>`` (Q1-Q3, and the model of Q7, 4.2, 4.3)
no variance (Q4)              ``vicreg with <scale> no_variance``
no generated neighbours (Q5)  ``vicreg with <scale> no_generated_neighbours neighbours_from=<VICReg>``
Laplacian eigenmaps (Q6)      ``eigenmaps with <scale>``
retrieval, anomaly,           ``downstream with <scale> task=<task> encoder_run=<run>`` for the
clustering (Q7, 4.2, 4.3)     VICReg and the no-generated-neighbours runs
============================  ==============================================================

Every number comes from those runs; every figure and table names the run(s) it came
from; sentences that state results are written from the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lfr_report import names
from lfr_report.evaluate.embed import MAP_NEIGHBOURS, knn_map_accuracy, representation_statistics
from lfr_report.report import figures
from lfr_report.report.document import Document
from lfr_report.report.spec import Need, Report, Runs, run_id
from lfr_report.ssl.vicreg import TERMS as LOSS_TERMS
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Metric, Run, RunStore

TITLES = {  # the loss's terms: their title and the exercise's equation
    "invariance": ("Invariance term L_inv(Z, Z')", "eq. 2"),
    "variance": ("Variance term L_var(Z) + L_var(Z')", "eq. 3"),
    "covariance": ("Covariance term L_cov(Z) + L_cov(Z')", "eq. 5"),
}
TERMS = tuple((term, *TITLES[term]) for term in LOSS_TERMS)  # (term, title, equation), in the loss's order
DOWNSTREAM_TASKS = ("retrieval", "anomaly", "clustering")
# The two encoders that Q7, 4.2 and 4.3 compare: (key of its run, name, short name).
COMPARED = (
    ("vicreg", "VICReg", "VICReg"),
    ("no_neighbours", "VICReg without generated neighbours", "No gen. neighbours"),
)


def needs(scale: str) -> list[Need]:
    return [
        Need("vicreg", "vicreg", [scale], role="VICReg (Q1-Q3)"),
        Need("no_variance", "vicreg", [scale, "no_variance"], role="ablation 1: no variance term (Q4)"),
        Need("no_neighbours", "vicreg", [scale, "no_generated_neighbours"], {"neighbours_from": run_id("vicreg")},
             role="ablation 2: no generated neighbours, from run {vicreg.id} (Q5)"),
        Need("eigenmaps", "eigenmaps", [scale], role="Laplacian eigenmaps (Q6)"),
        *(Need(f"{model}_{task}", "downstream", [scale], {"task": task, "encoder_run": run_id(model)},
               role=f"{task} of run {{{model}.id}} ({short})")
          for model, _, short in COMPARED for task in DOWNSTREAM_TASKS),
    ]  # fmt: skip


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """Figures, tables and result sentences of every question, in the exercise's order."""
    main = runs["vicreg"]
    spec = main.info["data_spec"]
    doc.title = f"VICReg on {spec['title']}"
    metrics = {run.id: store.metrics(run.id) for run in runs.values()}
    maps = {run.id: read_npz(store, run.id, names.TEST_EMBEDDING_2D) for run in (main, runs["no_variance"])}
    classes = spec["classes"]
    return {
        "dataset": spec,
        "run": main,
        "q1": _q1_training(main, metrics[main.id], doc),
        "q2": _q2_embeddings(main, maps[main.id], classes, doc),
        "q3": _q3_probe(main, metrics[main.id], doc),
        "q4": _q4_no_variance(store, runs, maps, metrics, classes, doc),
        "q5": _q5_no_neighbours(runs, metrics, doc),
        "q6": _q6_eigenmaps(store, runs, metrics, maps[main.id], classes, doc),
        "q7": _q7_retrieval(store, runs, classes, doc),
        "anomaly": _anomaly(store, runs, metrics, spec, doc),
        "clustering": _clustering(store, runs, metrics, classes, doc),
    }


REPORT = Report(
    name="vicreg",
    title="VICReg",
    template="vicreg.html",
    note_keys=(
        "q1",
        "q2",
        "q3",
        "q4",
        "q5",
        "q6",
        "q7",
        "ad1",
        "ad2",
        "ad3",
        "cl1",
        "cl2",
        "cl3",
        "difficulties",
        "ai-tools",
    ),
    needs=needs,
    sections=sections,
)


def _compared(runs: Runs, task: str) -> list[tuple[str, str, Run]]:
    """(name, short name, downstream run of ``task``) for each compared encoder."""
    return [(name, short, runs[f"{key}_{task}"]) for key, name, short in COMPARED]


# --- section 3 ------------------------------------------------------------------------------


def _q1_training(run: Run, metrics: dict[str, Metric], doc: Document) -> dict[str, Any]:
    steps_per_epoch = run.info.get("train_images", 0) // run.config["batch_size"] or None
    curves = []
    for term, title, equation in TERMS:
        train, test = metrics[names.train_metric(term)], metrics[names.test_metric(term)]
        fig = figures.train_test_curve(train.steps, train.values, test.steps, test.values, title, term, steps_per_epoch)
        caption = f"{title} ({equation}) per training batch and on the test set after each epoch."
        curves.append(doc.figure(figures.to_data_uri(fig, "svg"), caption, run))
    window = max(1, steps_per_epoch or 1)
    changes = {}
    for term in ("loss", *(t for t, _, _ in TERMS)):
        values = np.asarray(metrics[names.train_metric(term)].values)
        changes[term] = {
            "first": float(values[:window].mean()),
            "last": float(values[-window:].mean()),
            "test_first": metrics[names.test_metric(term)].values[0],
            "test_last": metrics[names.test_metric(term)].values[-1],
        }
    return {"figures": curves, "changes": changes, "batches": len(metrics["train_loss"].values),
            "steps_per_epoch": steps_per_epoch}  # fmt: skip


def _q2_embeddings(run: Run, maps: dict[str, np.ndarray], classes: tuple[str, ...], doc: Document) -> dict[str, Any]:
    labels = maps["labels"]
    fig = figures.scatter_by_class([("PCA", maps["pca"], labels), ("t-SNE", maps["tsne"], labels)], classes)
    figure = doc.figure(
        figures.to_data_uri(fig, "png"),
        f"PCA (left) and t-SNE (right) of the VICReg representations of {len(labels):,} test images, coloured by class.",
        run,
    )
    pca_accuracy, _ = knn_map_accuracy(maps["pca"], labels)
    tsne_accuracy, confusion = knn_map_accuracy(maps["tsne"], labels)
    per_class = confusion.sum(axis=1).clip(min=1)
    pairs = sorted(
        ((float((confusion[a, b] + confusion[b, a]) / (per_class[a] + per_class[b])), classes[a], classes[b])
         for a in range(len(classes)) for b in range(a + 1, len(classes))),
        reverse=True,
    )  # fmt: skip
    best = max(range(len(classes)), key=lambda c: confusion[c, c] / per_class[c])
    return {
        "figure": figure,
        "points": len(labels),
        "pca_accuracy": pca_accuracy,
        "tsne_accuracy": tsne_accuracy,
        "better": "t-SNE" if tsne_accuracy >= pca_accuracy else "PCA",
        "entangled": [{"share": s, "a": a, "b": b} for s, a, b in pairs[:3]],
        "cleanest": {"name": classes[best], "recall": float(confusion[best, best] / per_class[best])},
        "k": MAP_NEIGHBOURS,
    }


def _q3_probe(run: Run, metrics: dict[str, Metric], doc: Document) -> dict[str, Any]:
    spec = run.info["data_spec"]
    rows = [
        {"name": f"VICReg encoder representation ({run.config['encoder_dim']}-d)",
         "train": metrics[names.PROBE_TRAIN_ACCURACY].last, "test": metrics[names.PROBE_TEST_ACCURACY].last},
        {"name": f"Raw pixels ({int(np.prod(spec['shape'])):,}-d), the floor",
         "train": metrics[names.PIXELS_PROBE_TRAIN_ACCURACY].last, "test": metrics[names.PIXELS_PROBE_TEST_ACCURACY].last},
    ]  # fmt: skip
    table = doc.table(
        f"Linear-probe accuracy on {spec['title']} (one linear layer, cross-entropy, Adam, "
        f"{run.config['probe']['epochs']} epochs, encoder frozen).",
        run,
    )
    return {"table": table, "rows": rows, "gain": rows[0]["test"] - rows[1]["test"], "probe": run.config["probe"]}


def _q4_no_variance(store, runs, maps, metrics, classes, doc) -> dict[str, Any]:
    full, ablated = runs["vicreg"], runs["no_variance"]
    fig = figures.scatter_by_class(
        [("VICReg", maps[full.id]["pca"], maps[full.id]["labels"]),
         ("VICReg without variance term (mu = 0)", maps[ablated.id]["pca"], maps[ablated.id]["labels"])],
        classes,
    )  # fmt: skip
    figure = doc.figure(figures.to_data_uri(fig, "png"),
                        "PCA of the test representations: VICReg (left) and without the variance term (right).",
                        full, ablated)  # fmt: skip
    stats = {
        run.id: representation_statistics(read_npz(store, run.id, names.TEST_REPRESENTATIONS)["features"])
        for run in (full, ablated)
    }
    rows = [
        {"name": name, "run": run.id, "test": metrics[run.id][names.PROBE_TEST_ACCURACY].last, **stats[run.id]}
        for name, run in (("VICReg", full), ("VICReg without variance term", ablated))
    ]
    table = doc.table(
        "Linear probe and spread of the test representations, with and without the variance term.", full, ablated
    )
    return {"figure": figure, "table": table, "rows": rows, "change": rows[1]["test"] - rows[0]["test"]}


def _q5_no_neighbours(runs, metrics, doc) -> dict[str, Any]:
    full, ablated = runs["vicreg"], runs["no_neighbours"]
    rows = [
        {"name": name, "run": run.id, "epochs": run.config["epochs"], "test": metrics[run.id][names.PROBE_TEST_ACCURACY].last,
         "train": metrics[run.id][names.PROBE_TRAIN_ACCURACY].last}
        for name, run in (("VICReg (two augmentations)", full),
                          (f"No generated neighbours (image + one of its {ablated.config['neighbours_k']} nearest)", ablated))
    ]  # fmt: skip
    table = doc.table(
        "Linear-probe accuracy with generated (augmented) views and with real neighbours as the second view.",
        full,
        ablated,
    )
    pixels = metrics[full.id][names.PIXELS_PROBE_TEST_ACCURACY].last
    return {"table": table, "rows": rows, "change": rows[1]["test"] - rows[0]["test"], "pixels": pixels,
            "k": ablated.config["neighbours_k"]}  # fmt: skip


def _q6_eigenmaps(store, runs, metrics, vicreg_map, classes, doc) -> dict[str, Any]:
    eig = runs["eigenmaps"]
    tsne = read_npz(store, eig.id, names.EIGENMAP_TSNE)
    eigenmap = read_npz(store, eig.id, names.EIGENMAP)
    fig = figures.scatter_by_class(
        [("VICReg (test images)", vicreg_map["tsne"], vicreg_map["labels"]),
         (f"Laplacian eigenmaps ({len(tsne['labels']):,} train images)", tsne["tsne"], tsne["labels"])],
        classes,
    )  # fmt: skip
    figure = doc.figure(figures.to_data_uri(fig, "png"),
                        "t-SNE of VICReg's test representations (left) and of the Laplacian eigenmaps of training images (right).",
                        runs["vicreg"], eig)  # fmt: skip
    eig_accuracy, _ = knn_map_accuracy(tsne["tsne"], tsne["labels"])
    vicreg_accuracy, _ = knn_map_accuracy(vicreg_map["tsne"], vicreg_map["labels"])
    rows = [
        {"name": "VICReg", "run": runs["vicreg"].id, "test": metrics[runs["vicreg"].id][names.PROBE_TEST_ACCURACY].last,
         "evaluated": f"trained on all {runs['vicreg'].info.get('train_images', 0):,} training images, scored on the test split"},
        {"name": "Laplacian eigenmaps", "run": eig.id, "test": metrics[eig.id][names.PROBE_TEST_ACCURACY].last,
         "evaluated": f"trained on {len(eigenmap['labels']) - len(eigenmap['probe_scored']):,} of the embedded training images, "
                      f"scored on the other {len(eigenmap['probe_scored']):,}"},
    ]  # fmt: skip
    table = doc.table(
        "Linear probes of VICReg and of Laplacian eigenmaps, and how each was evaluated.", runs["vicreg"], eig
    )
    return {"figure": figure, "table": table, "rows": rows, "tsne_knn": {"vicreg": vicreg_accuracy, "eigenmaps": eig_accuracy},
            "config": eig.config, "graph_components": eig.info.get("graph_components", 0),
            "embedded": len(eigenmap["labels"])}  # fmt: skip


def _q7_retrieval(store, runs, classes, doc) -> dict[str, Any]:
    panels = []
    for name, _, run in _compared(runs, "retrieval"):
        found = read_npz(store, run.id, names.RETRIEVAL)
        rows, marks = [], []
        for q in range(len(found["queries"])):
            query_class = found["query_labels"][q]
            rows.append([found["query_images"][q], *found["nearest_images"][q], None, *found["farthest_images"][q]])
            marks.append(
                [
                    False,
                    *(found["nearest_labels"][q] != query_class),
                    False,
                    *(found["farthest_labels"][q] == query_class),
                ]
            )
        n = found["nearest"].shape[1]
        titles = ["query", *[f"near {i + 1}" for i in range(n)], "", *[f"far {i + 1}" for i in range(n)]]
        fig = figures.image_grid(
            rows, [classes[c] for c in found["query_labels"]], titles, highlight=marks, cell_in=0.36
        )
        figure = doc.figure(
            figures.to_data_uri(fig, "png"),
            f"{name}: one training image per class (left), its {n} nearest and its {n} most distant training images; "
            "a red frame marks a nearest image of another class or a distant image of the same class.",
            run,
        )
        same_near = float((found["nearest_labels"] == found["query_labels"][:, None]).mean())
        same_far = float((found["farthest_labels"] == found["query_labels"][:, None]).mean())
        far_classes = sorted({classes[c] for c in np.unique(found["farthest_labels"])})
        panels.append({"name": name, "figure": figure, "same_near": same_near, "same_far": same_far,
                       "far_classes": far_classes, "run": run.id})  # fmt: skip
    return {"panels": panels}


# --- section 4 ------------------------------------------------------------------------------


def _anomaly(store, runs, metrics, spec, doc) -> dict[str, Any]:
    curves, tops, rows, both = [], [], [], []
    for name, _, run in _compared(runs, "anomaly"):
        both.append(run)
        result = read_npz(store, run.id, names.ANOMALY)
        auc = metrics[run.id][names.ANOMALY_AUC].last
        curves.append((name, result["fpr"], result["tpr"], auc))
        tops.append((name, result))
        normal, anomalous = result["scores"][result["labels"] == 0], result["scores"][result["labels"] == 1]
        rows.append({"name": name, "run": run.id, "auc": auc, "top_anomalies": int(result["top_is_anomaly"].sum()),
                     "shown": len(result["top"]), "normal_median": float(np.median(normal)),
                     "anomalous_median": float(np.median(anomalous))})  # fmt: skip
    first = runs["vicreg_anomaly"]
    anomaly_spec = first.info["anomaly_spec"]
    roc = doc.figure(
        figures.to_data_uri(
            figures.roc_curves(curves, f"{spec['title']} normal, {anomaly_spec['title']} anomalous"), "svg"
        ),
        f"ROC curves of the kNN (k = {first.config['anomaly_k']}) inverse density score, {spec['title']} test images "
        f"labelled 0 and {anomaly_spec['title']} test images labelled 1; AUC in the legend.",
        *both,
        width=70,
    )
    shown = len(tops[0][1]["top"])
    grid = figures.image_grid(
        [list(result["top_images"]) for _, result in tops],
        [short for _, short, _ in _compared(runs, "anomaly")],
        [f"#{i + 1}" for i in range(shown)],
        [["anomaly" if a else "normal" for a in result["top_is_anomaly"]] for _, result in tops],
        cell_in=0.62,
    )  # fmt: skip
    top_figure = doc.figure(
        figures.to_data_uri(grid, "png"),
        f"The {shown} most anomalous test images by each model's score, most anomalous first, each labelled with the set it came from.",
        *both,
    )
    best = max(rows, key=lambda r: r["auc"])
    info = first.info
    table = doc.table("ROC-AUC of the kNN anomaly score and how the two score distributions sit apart.", *both)
    return {"roc": roc, "top": top_figure, "rows": rows, "best": best, "table": table, "anomaly_data": anomaly_spec,
            "normal_images": info.get("normal_images", 0), "anomaly_images": info.get("anomaly_images", 0),
            "anomaly_source": info.get("anomaly_source", ""), "k": first.config["anomaly_k"]}  # fmt: skip


def _clustering(store, runs, metrics, classes, doc) -> dict[str, Any]:
    panels, rows = [], []
    for name, short, run in _compared(runs, "clustering"):
        result = read_npz(store, run.id, names.CLUSTERING)
        fig = figures.cluster_maps(result["tsne"], result["assignments"], result["labels"], result["centres_tsne"],
                                   classes, short)  # fmt: skip
        panels.append(doc.figure(
            figures.to_data_uri(fig, "png"),
            f"{name}: t-SNE of {len(result['labels']):,} training representations coloured by k-means cluster (left) "
            "and by true class (right); cluster centres in black.",
            run,
        ))  # fmt: skip
        rows.append({"name": name, "run": run.id, "silhouette": metrics[run.id][names.SILHOUETTE].last,
                     "ari": metrics[run.id][names.ADJUSTED_RAND].last, "points": run.info.get("silhouette_points", 0),
                     "k": run.config["clusters"]})  # fmt: skip
    table = doc.table("Silhouette score (eq. 8, original dimension) and agreement of the clusters with the classes.",
                      *(run for _, _, run in _compared(runs, "clustering")))  # fmt: skip
    return {"figures": panels, "rows": rows, "table": table,
            "higher_silhouette": max(rows, key=lambda r: r["silhouette"]), "higher_ari": max(rows, key=lambda r: r["ari"])}  # fmt: skip

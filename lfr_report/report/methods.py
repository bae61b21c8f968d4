"""The methods report: the self-supervised methods of the two lecture decks
(``cs725-unsupervised-pretraining-slides.txt``, ``dl2-representation-learning-slides.txt``)
compared under one protocol: the same encoder, unlabelled images, number of images seen and
optimiser for every method, then the same evaluations of the frozen encoder (linear probe,
weighted kNN) and fine-tuning with 1% and 10% of the labels.

Runs it needs, found in the store or run (each at the report's scale), per method:

=====================  ==================================================================
pretraining            ``methods with <scale> method=<name>``: pretraining, probe, kNN
fine-tuning            ``finetune with <scale> encoder_run=<id> fractions=[0.01, 0.1]``
=====================  ==================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lfr_report import names
from lfr_report.report import figures, references
from lfr_report.report.document import Document
from lfr_report.report.figures import Panel, line
from lfr_report.report.spec import Need, Report, Runs, run_id
from lfr_report.ssl.methods import METHODS
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import RunStore

FRACTIONS = (0.01, 0.1)  # the label shares fine-tuned with
LABELS = {"rotation": "Rotation", "jigsaw": "Jigsaw", "relative_position": "Relative position", "mae": "MAE-style",
          "simclr": "SimCLR", "byol": "BYOL", "vicreg": "VICReg", "barlow": "Barlow Twins"}  # fmt: skip
CITED = {"rotation": "rotnet", "jigsaw": "jigsaw", "relative_position": "context", "mae": "mae", "simclr": "simclr",
         "byol": "byol", "vicreg": "vicreg", "barlow": "barlow"}  # fmt: skip
# Published CIFAR-10 figures with a ResNet-18, for the `full` table: (evaluation, top-1 %, pretraining epochs, source)
PUBLISHED = {
    "simclr": [("linear", 90.74, 1000, "solo-learn"), ("kNN", 84.7, 200, "lightly")],
    "vicreg": [("linear", 92.07, 1000, "solo-learn")],
    "byol": [("kNN", 91.0, 800, "lightly")],
}
# The evaluations of the table, in its order: key -> heading
EVALUATIONS = {"linear": "Linear probe", "knn": "kNN", "ft1": "Fine-tuned, 1%", "ft10": "Fine-tuned, 10%"}


def needs(scale: str) -> list[Need]:
    listed = []
    for method, label in LABELS.items():
        listed += [
            Need(method, "methods", [scale], {"method": method}, role=f"{label}: pretraining, linear probe, kNN"),
            Need(f"{method}_tuned", "finetune", [scale], {"encoder_run": run_id(method), "fractions": list(FRACTIONS)},
                 role=f"{label}: fine-tuning with 1% and 10% of the labels"),
        ]  # fmt: skip
    return listed


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """Tables, figures and the comparison's sentences, in the order the template shows them."""
    methods = [m for m in LABELS if m in runs]
    first, tuned = runs[methods[0]], runs[f"{methods[0]}_tuned"]
    metrics = {run.id: store.metrics(run.id) for run in runs.values()}
    rows = []
    for m in methods:
        run, tune = runs[m], runs[f"{m}_tuned"]
        knn = metrics[run.id][names.KNN_TEST_ACCURACY].values[-1]
        evaluations = {
            "linear": metrics[run.id][names.PROBE_TEST_ACCURACY].mean_std(),
            "knn": (float(knn), None),
            "ft1": metrics[tune.id][names.fraction_accuracy(0.01)].mean_std(),
            "ft10": metrics[tune.id][names.fraction_accuracy(0.1)].mean_std(),
        }
        rows.append({"method": m, "name": LABELS[m], "family": METHODS[m][0], "evaluations": evaluations,
                     "seconds": run.info["pretrain_seconds"], "time": _duration(run.info["pretrain_seconds"]), "images_per_second": run.info["images_per_second"],
                     "resumed": run.info.get("resumed_from_epoch", 0), "runs": f"{run.id}, {tune.id}",
                     "published": PUBLISHED.get(m, [])})  # fmt: skip
    full = str(first.config["scale"]).startswith("full")  # and its rehearsal: the same data set and backbone
    table = doc.table(
        "All methods under one protocol: top-1 test accuracy (%) of a linear probe and of the weighted kNN classifier "
        f"on the frozen encoder, and after fine-tuning the whole network with 1% and 10% of the labels; mean ± std over "
        f"the evaluation seeds ({len(first.config['probe_seeds'])} probes, {len(tuned.config['seeds'])} fine-tunings; "
        "the kNN classifier has no seed), with the pretraining's wall time and speed on this machine."
        + (" The last column gives published figures for the same data and backbone, with their budgets." if full else ""),
        *(runs[k] for m in methods for k in (m, f"{m}_tuned")),
    )  # fmt: skip
    refs = references.cited([*(CITED[m] for m in methods), "knn", *references.for_data_sets([first.config["data"]["name"]]),
                             *(["solo_learn", "lightly"] if full else [])])  # fmt: skip
    return {
        "run": first, "tuned": tuned, "methods": methods, "rows": rows, "table": table, "full": full,
        "evaluations": EVALUATIONS, "published_epochs": _epoch_range(rows),
        "findings": findings(rows), "references": refs, "labels": LABELS,
        "configs": {m: runs[m].config for m in methods},
        "figures": {
            "curves": _curves(runs, methods, metrics, doc),
            "time": _accuracy_against_time(runs, rows, doc),
            "tsne": _tsne(store, runs, methods, doc),
        },
    }  # fmt: skip


def findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per evaluation: the best method, the family that wins it, and the methods whose mean lies
    within the seeds' spread of the best (the gap no larger than the two standard deviations
    summed; for kNN, which has no seeds, within 0.5 points)."""
    found = []
    for key, heading in EVALUATIONS.items():
        ranked = sorted(rows, key=lambda r: r["evaluations"][key][0], reverse=True)
        best = ranked[0]
        mean = best["evaluations"][key][0]
        tied = [r["name"] for r in ranked[1:] if _within_spread(best["evaluations"][key], r["evaluations"][key])]
        families = {}
        for r in ranked:  # each family's best, in rank order
            families.setdefault(r["family"], r)
        found.append({"evaluation": heading, "best": best["name"], "family": best["family"], "mean": mean,
                      "tied": tied, "worst": ranked[-1]["name"], "worst_mean": ranked[-1]["evaluations"][key][0],
                      "families": [(f, r["name"], r["evaluations"][key][0]) for f, r in families.items()]})  # fmt: skip
    return found


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 10 min``: a wall time as the table shows it."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _epoch_range(rows: list[dict[str, Any]]) -> list[int]:
    """The fewest and the most pretraining epochs among the published figures quoted (one if they agree)."""
    epochs = [e for r in rows for _, _, e, _ in r["published"]]
    return sorted({min(epochs), max(epochs)}) if epochs else []


def _within_spread(best: tuple[float, float | None], other: tuple[float, float | None]) -> bool:
    """Whether ``other``'s mean is within the seeds' spread of ``best``'s (see ``findings``)."""
    if best[1] is None:
        return best[0] - other[0] <= 0.005
    return best[0] - other[0] <= best[1] + (other[1] or 0.0)


REPORT = Report(
    name="methods",
    title="Self-supervised methods under one protocol",
    template="methods.html",
    note_keys=("comparison",),
    needs=needs,
    sections=sections,
)


def _curves(runs: Runs, methods: list[str], metrics, doc: Document) -> list:
    """Each method's training loss against the images seen, four methods a figure."""
    shown = []
    for group in (methods[:4], methods[4:]):
        panels = []
        for m in group:
            run, loss = runs[m], metrics[runs[m].id][names.train_metric("loss")]
            seen = (np.asarray(loss.steps) + 1) * run.config["batch_size"] / 1000
            window = max(1, len(loss.values) // 20)
            panels.append(Panel([line(seen, figures.moving_average(np.asarray(loss.values), window), linewidth=1.1)],
                                "images seen (thousands)", "training loss" if not panels else "", title=LABELS[m]))  # fmt: skip
        if panels:
            fig = figures.line_panels(panels, (figures.WIDTH_IN, 1.9))
            shown.append(doc.figure(figures.to_data_uri(fig, "svg"),
                                    f"Pretraining curves of {', '.join(LABELS[m] for m in group)}: each method's own "
                                    "loss per batch (a moving average), against the images seen.",
                                    *(runs[m] for m in group)))  # fmt: skip
    return shown


def _accuracy_against_time(runs: Runs, rows: list[dict[str, Any]], doc: Document):
    fig, ax = figures.plt.subplots(figsize=(figures.WIDTH_IN * 0.7, 2.6))
    for i, r in enumerate(rows):
        colour = figures.plt.get_cmap("tab10")(i)
        minutes = r["seconds"] / 60
        linear, knn = r["evaluations"]["linear"][0], r["evaluations"]["knn"][0]
        ax.plot([minutes], [100 * linear], "o", color=colour, label=r["name"])
        ax.plot([minutes], [100 * knn], "^", color=colour, fillstyle="none")
        ax.annotate(r["name"], (minutes, 100 * linear), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("pretraining wall time (minutes, this machine)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return doc.figure(figures.to_data_uri(fig, "svg"),
                      "Accuracy against pretraining time: the linear probe (filled circles) and the kNN classifier "
                      "(open triangles) of each method, at the same number of images seen.",
                      *(runs[r["method"]] for r in rows), width=75)  # fmt: skip


def _tsne(store: RunStore, runs: Runs, methods: list[str], doc: Document) -> list:
    """t-SNE of each method's test representations, four methods a figure."""
    data_set, classes = runs[methods[0]].config["data"]["name"], runs[methods[0]].info["data_spec"]["classes"]
    shown = []
    for group in (methods[:4], methods[4:]):
        if not group:
            continue
        panels = []
        for m in group:
            embedding = read_npz(store, runs[m].id, names.TEST_EMBEDDING_2D)
            panels.append((LABELS[m], embedding["tsne"], embedding["labels"]))
        fig = figures.scatter_by_class(panels, classes)
        shown.append(doc.figure(figures.to_data_uri(fig, "png"),
                                f"t-SNE of {len(panels[0][1]):,} test representations of {data_set} under "
                                f"{', '.join(LABELS[m] for m in group)}, coloured by the class no method saw.",
                                *(runs[m] for m in group)))  # fmt: skip
    return shown

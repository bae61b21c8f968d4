"""The unsupervised-pretraining report, after the second example report of the lfr2024 seed
("Learning Feature Representations Assignment Module 1"): the baseline's encoder pretrained
as a denoising autoencoder and with Deep InfoMax, each then given a classification head,
frozen or fine-tuned, with 100% and 5% of the labels, against the baseline trained from
scratch; a t-SNE of each method's test representations and an ablation of DIM's local and
global terms.
"""

from __future__ import annotations

from typing import Any

from lfr_report import names
from lfr_report.report import figures, references
from lfr_report.report.document import Document
from lfr_report.report.figures import Panel
from lfr_report.report.spec import Need, Report, Runs, run_id
from lfr_report.ssl.dim import TERMS as DIM_TERMS
from lfr_report.tracking.artifacts import read_npz, read_torch
from lfr_report.tracking.store import RunStore

METHODS = {"baseline": "Baseline", "dae": "Baseline + dAE", "dim": "Baseline + DIM"}
ABLATIONS = {"dim": "DIM (α = 0.5, β = 1)", "no_local": "without the local term (β = 0)",
             "no_global": "without the global term (α = 0)"}  # fmt: skip
MODES = ("frozen", "tuned")  # the encoder frozen (a head on its representation) or fine-tuned with the head
EVALUATION = "pretraining"  # finetune's named config: the example's classifier recipe, 5% and 100% of the labels
TERM_LABELS = {"global_mi": "global MI (JSD estimate)", "local_mi": "local MI (JSD estimate)",
               "prior": "prior matching V"}  # fmt: skip


def needs(scale: str) -> list[Need]:
    # the scale after the recipe: its sizes win; at full, the second example's classifier settings after that
    evaluation = [EVALUATION, scale, *(["pretraining_full"] if scale == "full" else [])]
    listed = [
        Need("dim", "pretrain", [scale], role="Deep InfoMax pretraining"),
        Need("dae", "pretrain", [scale, "dae"], role="denoising autoencoder pretraining"),
        Need("no_local", "pretrain", [scale, "no_local"], role="ablation: DIM without the local term (β = 0)"),
        Need("no_global", "pretrain", [scale, "no_global"], role="ablation: DIM without the global term (α = 0)"),
    ]
    for key in ("dim", "dae"):
        listed += [
            Need(f"{key}_frozen", "finetune", evaluation, {"encoder_run": run_id(key), "frozen": True},
                 role=f"{METHODS[key]}: head on the frozen encoder of run {{{key}.id}}"),
            Need(f"{key}_tuned", "finetune", evaluation, {"encoder_run": run_id(key)},
                 role=f"{METHODS[key]}: encoder of run {{{key}.id}} fine-tuned with the head"),
        ]  # fmt: skip
    listed += [
        Need("baseline_frozen", "finetune", evaluation, {"encoder_run": run_id("dim"), "init": "scratch", "frozen": True},
             role="Baseline: head on a frozen random encoder"),
        Need("baseline_tuned", "finetune", evaluation, {"encoder_run": run_id("dim"), "init": "scratch",
                                                        "embed_fraction": 1.0},
             role="Baseline: trained from scratch (supervised)"),
        *(Need(f"{key}_frozen", "finetune", evaluation, {"encoder_run": run_id(key), "frozen": True},
               role=f"ablation: head on the frozen encoder of run {{{key}.id}}") for key in ("no_local", "no_global")),
    ]  # fmt: skip
    return listed


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """The example's sections: setup, methods, curves, Table 1, t-SNE, ablation, findings."""
    metrics = {key: store.metrics(run.id) for key, run in runs.items()}
    evaluation = runs["dim_tuned"]
    fractions = sorted(evaluation.config["fractions"], reverse=True)
    seeds = len(evaluation.config["seeds"])

    def accuracy(key: str, fraction: float) -> tuple[float, float]:
        return metrics[key][names.fraction_accuracy(fraction)].mean_std()

    rows = [{"name": name, "key": method,
             "cells": [accuracy(f"{method}_{mode}", f) for mode in MODES for f in fractions],
             "runs": ", ".join(runs[f"{method}_{mode}"].id for mode in MODES)} for method, name in METHODS.items()]  # fmt: skip
    table = doc.table(f"Test accuracy (%) on {evaluation.info['data_spec']['title']}: the encoder frozen (only the head "
                      "trained) or fine-tuned with the head, on 100% and 5% of the labelled images; mean ± std over "
                      f"{seeds} seeds (the same labelled subsets for every method).",
                      *(runs[f"{m}_{mode}"] for m in METHODS for mode in MODES))  # fmt: skip
    low = min(fractions)
    frozen_low = {m: accuracy(f"{m}_frozen", low)[0] for m in METHODS}
    tuned_low = {m: accuracy(f"{m}_tuned", low)[0] for m in METHODS}

    ablation_rows = [{"name": name, "run": runs[key].id, "eval_run": runs[f"{key}_frozen"].id,
                      "alpha": runs[key].config["alpha"], "beta": runs[key].config["beta"],
                      "cells": [accuracy(f"{key}_frozen", f) for f in fractions],
                      "terms": {t: metrics[key][names.test_metric(t)].last for t in DIM_TERMS}}
                     for key, name in ABLATIONS.items()]  # fmt: skip
    ablation = doc.table("Ablation of Deep InfoMax's terms: accuracy (%) of a head on the frozen encoder, and the "
                         "terms on the test split after the last epoch (each run's own weights; the JSD estimates are "
                         "−2 log 2 ≈ −1.386 for a critic that scores every pair alike, near 0 for one that "
                         "separates them; V is −2 log 2 when the discriminator cannot tell y from the prior).",
                         *(runs[k] for k in ABLATIONS), *(runs[f"{k}_frozen"] for k in ABLATIONS))  # fmt: skip

    encoder = read_torch(store, runs["dim"].id, names.ENCODER)["arch"]
    accuracies = {(m, mode, f): accuracy(f"{m}_{mode}", f)[0] for m in METHODS for mode in MODES for f in fractions}
    refs = references.cited(["dim", "mine", "fgan", "dae", *references.for_data_sets(
        [runs["dim"].config["data"]["name"], evaluation.info["dataset"]])])  # fmt: skip
    return {
        "abstract": abstract(accuracies, fractions, runs["dim"].info["data_spec"]["title"],
                             evaluation.info["data_spec"]["title"]),
        "references": refs,
        "run": runs["dim"], "dae": runs["dae"], "evaluation": evaluation, "scratch": runs["baseline_tuned"],
        "arch": encoder, "spec": runs["dim"].info["data_spec"], "eval_spec": evaluation.info["data_spec"],
        "fractions": fractions, "seeds": seeds, "rows": rows, "table": table,
        "frozen_low": frozen_low, "tuned_low": tuned_low, "low": low,
        "beats_frozen": [METHODS[m] for m in ("dae", "dim") if frozen_low[m] > frozen_low["baseline"]],
        "beats_tuned": [METHODS[m] for m in ("dae", "dim") if tuned_low[m] > tuned_low["baseline"]],
        "ablation_rows": ablation_rows, "ablation_table": ablation,
        "best_ablation": max(ablation_rows, key=lambda r: r["cells"][0][0]),
        "fraction_text": " and ".join(f"{100 * f:g}%" for f in fractions),
        "figures": {"dim_curves": _dim_curves(runs, metrics, doc), "dae_curve": _dae_curve(runs, metrics, doc),
                    "tsne": _tsne(store, runs, doc)},
    }  # fmt: skip


SHORT = {"dae": "the dAE", "dim": "DIM"}  # the pretrained methods, as the abstract names them


def abstract(accuracy: dict[tuple[str, str, float], float], fractions: list[float], pretrained_on: str,
             classified: str) -> str:  # fmt: skip
    """The report's abstract, written from Table 1: where pretraining helps (frozen or fine-tuned, each
    label fraction), by how much, and which method helps most. ``accuracy[(method, mode, fraction)]``."""

    def share(f: float) -> str:
        return f"{100 * f:g}%"

    def gains(mode: str, f: float) -> dict[str, float]:
        return {m: 100 * (accuracy[(m, mode, f)] - accuracy[("baseline", mode, f)]) for m in SHORT}

    def clause(mode: str, f: float) -> str:
        gain = gains(mode, f)
        best = max(gain, key=gain.get)
        if gain[best] <= 0:
            return (f"at {share(f)} of the labels neither beats the baseline "
                    f"(dAE {gain['dae']:+.1f}, DIM {gain['dim']:+.1f} points)")  # fmt: skip
        other = "dae" if best == "dim" else "dim"
        return (f"at {share(f)} of the labels {SHORT[best]} gains {gain[best]:+.1f} points over the baseline's "
                f"{100 * accuracy[('baseline', mode, f)]:.1f}% and {SHORT[other]} {gain[other]:+.1f}")  # fmt: skip

    low, high = min(fractions), max(fractions)
    frozen = "; ".join(clause("frozen", f) for f in (low, high))
    tuned = "; ".join(clause("tuned", f) for f in (low, high))
    shrink = all(gains("tuned", low)[m] < gains("frozen", low)[m] for m in SHORT)
    total = {m: sum(gains(mode, f)[m] for mode in MODES for f in fractions) for m in SHORT}
    leader = max(total, key=total.get)
    return (
        f"We pretrain the baseline's encoder on {pretrained_on} without labels, as a denoising autoencoder (dAE) "
        f"and with Deep InfoMax (DIM), and classify {classified} with {share(high)} and {share(low)} of the "
        f"labels, the encoder frozen or fine-tuned. With the encoder frozen, {frozen}. Fine-tuned, {tuned}"
        f"{': the labels make up for much of what pretraining gave' if shrink else ''}. Over the four settings "
        f"{SHORT[leader]} helps more{' on average' if total[leader] > 0 else ' (or hurts less)'}."
    )


REPORT = Report(
    name="pretraining",
    title="Unsupervised pretraining: denoising autoencoder and Deep InfoMax",
    template="pretraining.html",
    note_keys=("problem", "methods", "results", "ablation", "conclusions", "ai-tools"),
    needs=needs,
    sections=sections,
)


def _per_epoch(run) -> int:
    return max(1, run.info["train_images"] // run.config["batch_size"])


def _dim_curves(runs: Runs, metrics, doc: Document):
    panels = []
    for term in DIM_TERMS:
        lines = []
        for key, color in (("dim", "tab:blue"), ("no_local", "tab:orange"), ("no_global", "tab:green")):
            train, test = metrics[key][names.train_metric(term)], metrics[key][names.test_metric(term)]
            lines += figures.epoch_lines(train.steps, train.values, test.steps, test.values, _per_epoch(runs[key]),
                                         color, f"{ABLATIONS[key]}, train", "test")  # fmt: skip
        panels.append(Panel(lines, "epoch", TERM_LABELS[term], legend={"fontsize": 5} if term == "prior" else None))
    return doc.figure(figures.to_data_uri(figures.line_panels(panels, (figures.WIDTH_IN, 2.3)), "svg"),
                      "Deep InfoMax's three terms during pretraining, per batch (moving average) and on the test split "
                      "after each epoch, for DIM and the two ablations.", *(runs[k] for k in ABLATIONS))  # fmt: skip


def _dae_curve(runs: Runs, metrics, doc: Document):
    run, m = runs["dae"], metrics["dae"]
    train, test = m[names.train_metric("loss")], m[names.test_metric("loss")]
    lines = figures.epoch_lines(train.steps, train.values, test.steps, test.values, _per_epoch(run), "tab:blue",
                                "train", "test")  # fmt: skip
    panel = Panel(lines, "epoch", "reconstruction cross-entropy", legend={"fontsize": 6})
    return doc.figure(figures.to_data_uri(figures.line_panels([panel], (figures.WIDTH_IN * 0.5, 2.2)), "svg"),
                      "Denoising autoencoder: binary cross-entropy between the reconstruction of the noisy image and "
                      "the clean image, per batch (moving average) and on the test split after each epoch.", run,
                      width=55)  # fmt: skip


def _tsne(store: RunStore, runs: Runs, doc: Document):
    shown = [("Baseline (trained with all labels)", "baseline_tuned"), ("dAE encoder", "dae"), ("DIM encoder", "dim")]
    panels = []
    for title, key in shown:
        saved = read_npz(store, runs[key].id, names.TEST_EMBEDDING_2D)
        panels.append((title, saved["tsne"], saved["labels"]))
    classes = runs["dim"].info["data_spec"]["classes"]
    return doc.figure(figures.to_data_uri(figures.scatter_by_class(panels, classes), "png"),
                      f"t-SNE of {len(panels[0][2]):,} test representations of each method, coloured by class: the "
                      "supervised baseline's, and the pretrained encoders' before any label was seen.",
                      *(runs[k] for _, k in shown))  # fmt: skip

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

from typing import Any

from lfr_report import names
from lfr_report.report import figures, references
from lfr_report.report.document import Document
from lfr_report.report.figures import Panel, line
from lfr_report.report.spec import Need, Report, Runs, run_id
from lfr_report.tracking.artifacts import read_npz, read_torch
from lfr_report.tracking.store import RunStore

BACKBONES = {"convnet": ("ConvNet", []), "resnet": ("ResNet", ["resnet"])}  # key -> (name, named configs)
INITS = ("pretrained", "scratch")  # fine-tuning from the SimCLR weights, and the same network from fresh ones
# On one CPU thread ResNet-20's SimCLR pretraining at `default` takes 1.2 s a step (1,170 steps: 23 min) against
# the ConvNet's 0.5 s (10 min), and its two fine-tuning runs would come on top (not measured at this setting):
# the CPU scale keeps the ConvNet, to bring `make report` near an hour on 2 cores; smoke and full compare both.
CPU_BACKBONES = {"default": ("convnet",)}


def backbones(scale: str) -> dict[str, tuple[str, list[str]]]:
    """The backbones the report compares at ``scale``."""
    keys = CPU_BACKBONES.get(scale, tuple(BACKBONES))
    return {key: BACKBONES[key] for key in keys}


def needs(scale: str) -> list[Need]:
    listed = []
    for key, (name, named) in backbones(scale).items():
        listed += [
            Need(key, "simclr", [scale, *named], role=f"{name}: SimCLR pretraining, linear evaluation"),
            Need(f"{key}_pretrained", "finetune", [scale], {"encoder_run": run_id(key), "init": "pretrained"},
                 role=f"{name}: fine-tuning the pretrained encoder"),
            Need(f"{key}_scratch", "finetune", [scale], {"encoder_run": run_id(key), "init": "scratch"},
                 role=f"{name}: the same network from scratch"),
        ]  # fmt: skip
    return listed


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """Tables, figures and result sentences, in the order the template shows them."""
    metrics = {run.id: store.metrics(run.id) for run in runs.values()}
    chosen = dict(_present(runs))
    first = next(iter(chosen))
    fractions = runs[f"{first}_pretrained"].config["fractions"]
    seeds = len(runs[f"{first}_pretrained"].config["seeds"])

    def accuracy(key: str, fraction: float) -> tuple[float, float]:
        return metrics[runs[key].id][names.fraction_accuracy(fraction)].mean_std()

    architectures = []
    for key, (name, _) in chosen.items():
        pretrain = runs[key]
        architectures.append({"name": name, "arch": read_torch(store, pretrain.id, names.ENCODER)["arch"],
                              "run": pretrain.id, **pretrain.info["parameters"]})  # fmt: skip

    linear_rows = []
    for key, (name, _) in chosen.items():
        linear = metrics[runs[key].id][names.TRANSFER_PROBE_TEST_ACCURACY].mean_std()
        linear_rows.append({"name": name, "linear": linear, "supervised": accuracy(f"{key}_scratch", 1.0),
                            "runs": f"{runs[key].id}, {runs[f'{key}_scratch'].id}"})  # fmt: skip
    pool = runs[f"{first}_scratch"].config["data"]["train_size"]
    labels = f"the {pool:,} labelled images of the fine-tuning pool" if pool else "all labels"
    linear_table = doc.table("Linear evaluation: top-1 accuracy (%) of a linear layer on the frozen pretrained backbone, "
                             f"beside the fully supervised baseline (the same network trained from scratch on {labels}); "
                             f"mean ± std over {seeds} seeds.",
                             *(runs[k] for key in chosen for k in (key, f"{key}_scratch")))  # fmt: skip

    fraction_rows = []
    for fraction in fractions:
        row: dict[str, Any] = {"fraction": fraction}
        for key in chosen:
            row[key] = {init: accuracy(f"{key}_{init}", fraction) for init in INITS}
        fraction_rows.append(row)
    tuned = [runs[f"{key}_{init}"] for key in chosen for init in INITS]
    fraction_table = doc.table("Semi-supervised learning: top-1 accuracy (%) after fine-tuning the whole network on a "
                               "stratified fraction of the labels, from the SimCLR weights ('Pre-trained') and from "
                               f"scratch ('Supervised'); mean ± std over {seeds} seeds, the same labelled subsets for both.",
                               *tuned)  # fmt: skip

    findings = []
    for key, (name, _) in chosen.items():
        low = fraction_rows[0][key]
        gap = low["pretrained"][0] - low["scratch"][0]
        crossing = next((r["fraction"] for r in fraction_rows if r[key]["pretrained"][0] <= r[key]["scratch"][0]), None)
        findings.append({"name": name, "gap_low": gap, "crossing": crossing,
                         "gap_full": fraction_rows[-1][key]["pretrained"][0] - fraction_rows[-1][key]["scratch"][0]})  # fmt: skip

    pretrained_on, transfer = runs[first].config["data"]["name"], runs[f"{first}_pretrained"].info["dataset"]
    refs = references.cited(["simclr", "cpc", *(["resnet"] if "resnet" in chosen else []),
                             *references.for_data_sets([pretrained_on, transfer])])  # fmt: skip
    figs = {
        "views": _views_figure(store, runs[first], doc),
        "framework": _framework_figure(
            runs[first], " or ".join(a["name"] for a in architectures), references.numbers(refs)["simclr"], doc
        ),
        "curves": _pretraining_curves(runs, metrics, doc),
        "fractions": _fraction_figure(runs, fraction_rows, seeds, doc),
    }
    return {"run": runs[first], "tuned": runs[f"{first}_pretrained"],
            "architectures": architectures, "linear_rows": linear_rows, "linear_table": linear_table,
            "fraction_rows": fraction_rows, "fraction_table": fraction_table, "backbone_keys": list(chosen),
            "backbone_names": {k: name for k, (name, _) in chosen.items()}, "findings": findings, "figures": figs,
            "seeds": seeds, "channels": runs[first].info["data_spec"]["channels"], "references": refs,
            "left_out": [name for key, (name, _) in BACKBONES.items() if key not in chosen]}  # fmt: skip


REPORT = Report(
    name="simclr",
    title="SimCLR pretraining and transfer with few labels",
    template="simclr.html",
    note_keys=("pretraining", "linear", "semi-supervised", "conclusions"),
    needs=needs,
    sections=sections,
)


def _framework_figure(run, backbone: str, reference: int, doc: Document):
    """The SimCLR framework (the example's Figure 2, after Chen et al.'s), labelled with this run's settings."""
    c = run.config
    boxes = {
        "x": (0.05, 0.5, "$x$"),
        "xi": (0.24, 0.82, r"$\tilde{x}_i$"), "xj": (0.24, 0.18, r"$\tilde{x}_j$"),
        "hi": (0.47, 0.82, "$h_i$"), "hj": (0.47, 0.18, "$h_j$"),
        "zi": (0.70, 0.82, "$z_i$"), "zj": (0.70, 0.18, "$z_j$"),
        "loss": (0.90, 0.5, f"NT-Xent loss\nτ = {c['temperature']}"),
    }  # fmt: skip
    f = f"f: {backbone}"
    g = f"g: {c['projector_layers']}-layer MLP"
    arrows = [("x", "xi", "t ~ T"), ("x", "xj", "t′ ~ T"), ("xi", "hi", f), ("xj", "hj", f),
              ("hi", "zi", g), ("hj", "zj", g), ("zi", "loss", ""), ("zj", "loss", "")]  # fmt: skip
    fig = figures.flow_diagram(boxes, arrows, (figures.WIDTH_IN, 2.0))
    return doc.figure(figures.to_data_uri(fig, "png"),  # PNG: its math symbols drawn by matplotlib, not the PDF's fonts
                      f"The SimCLR framework [{reference}]: two augmentations t and t′ drawn from the same family T make two views "
                      "of an image x; the backbone f gives their representations h (the features every evaluation "
                      f"uses, {c['encoder_dim']}-dimensional here) and the projection head g their projections z "
                      f"({c['projector_dim']}-dimensional), between which the contrastive loss is computed; g is "
                      "discarded after pretraining. Labelled with the pretraining run's settings.", run, width=90)  # fmt: skip


def _views_figure(store: RunStore, run, doc: Document):
    """Pairs of augmented views of training images, stored by the pretraining run."""
    views = read_npz(store, run.id, names.VIEWS)
    rows = [list(views["images"]), list(views["view_1"]), list(views["view_2"])]
    fig = figures.image_grid(rows, row_labels=["image", "view 1", "view 2"], cell_in=0.55)
    return doc.figure(figures.to_data_uri(fig, "png"),
                      f"Data augmentation: {len(views['images'])} training images of {run.config['data']['name']} and "
                      "two random views of each, made by the pretraining run's augmentation settings.", run, width=70)  # fmt: skip


def _pretraining_curves(runs: Runs, metrics, doc: Document):
    panels = []
    for term, label in (("loss", "NT-Xent loss"), ("top1", "positive found (top-1)")):
        lines = []
        for (key, (name, _)), color in zip(_present(runs), ("tab:blue", "tab:orange"), strict=False):
            run, m = runs[key], metrics[runs[key].id]
            per_epoch = run.info["train_images"] // run.config["batch_size"]
            train, test = m[names.train_metric(term)], m[names.test_metric(term)]
            lines += figures.epoch_lines(train.steps, train.values, test.steps, test.values, per_epoch, color,
                                         f"{name}, train", f"{name}, test")  # fmt: skip
        panels.append(Panel(lines, "epoch", label, legend={"fontsize": 6} if term == "top1" else None))
    return doc.figure(figures.to_data_uri(figures.line_panels(panels, (figures.WIDTH_IN, 2.3)), "svg"),
                      "SimCLR pretraining: the loss and the share of views whose most similar other view is their "
                      "partner, per batch (moving average) and on the test split after each epoch.",
                      *(runs[key] for key, _ in _present(runs)))  # fmt: skip


def _fraction_figure(runs: Runs, rows: list[dict[str, Any]], seeds: int, doc: Document):
    x = [100 * r["fraction"] for r in rows]
    panels = []
    for i, (key, (name, _)) in enumerate(_present(runs)):
        lines = [line(x, [100 * r[key][init][0] for r in rows], "o-", yerr=[100 * r[key][init][1] for r in rows],
                      color=color, capsize=2, markersize=3, linewidth=1, label=label)
                 for init, color, label in (("pretrained", "tab:blue", "pre-trained"),
                                            ("scratch", "tab:gray", "from scratch"))]  # fmt: skip
        panels.append(Panel(lines, "labelled share of the training split", "test accuracy (%)" if i == 0 else "",
                            title=name, xscale="log", xticks=(x, [f"{v:g}%" for v in x]),
                            legend={"fontsize": 6} if i == 0 else None))  # fmt: skip
    return doc.figure(figures.to_data_uri(figures.line_panels(panels, (figures.WIDTH_IN, 2.3), sharey=True), "svg"),
                      "Fine-tuning with few labels: test accuracy against the labelled share (log scale), mean ± std "
                      f"over {seeds} seeds.", *(runs[f"{key}_{init}"] for key, _ in _present(runs) for init in INITS))  # fmt: skip


def _present(runs: Runs) -> list[tuple[str, tuple[str, list[str]]]]:
    """The backbones whose runs the report has, in ``BACKBONES``' order."""
    return [(key, value) for key, value in BACKBONES.items() if key in runs]

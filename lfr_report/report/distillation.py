"""The dataset-distillation project report (lfr2024 "Unsupervised dataset distillation").

"What to submit" asks for a short report of what was done beyond the baseline code, with
visualisations of the distilled set and the training progress, and the problems and
surprises met. Runs it needs, found in the store or run (each at the report's scale):

=====================  =========================================================================
three solvers          ``distill with <scale> penalty`` / ``value`` / ``implicit`` (|D| = 100)
baselines              ``distill with <scale> baselines size=<n>`` for every |D| shown
sizes of D             ``distill with <scale> <best solver> size=<n>`` for n in SIZES
options                ``... with_diversity``, ``... dsm``, ``... exact_sm`` and (not at smoke scale) two tasks
their baselines        ``distill with <scale> baselines dsm`` / ``exact_sm`` / ``tasks=["fashion_mnist"]``:
                       the random subset refitted with the option's inner loss, on its second task
=====================  =========================================================================

The best solver is the one with the highest protocol-(b) accuracy at |D| = 100; the
size sweep and the options use it. Every number comes from those runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from lfr_report.distill import SOLVERS
from lfr_report.report import figures
from lfr_report.report.document import Document, run_summary
from lfr_report.report.notes import read_note
from lfr_report.report.render import render_html, write_pdf
from lfr_report.report.runner import find_or_run
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Metric, Run, RunStore

SOLVER_NAMES = {"penalty": "Quadratic penalty", "value": "Optimal-value reformulation",
                "implicit": "Implicit differentiation"}  # fmt: skip
SIZES = (10, 50, 100, 500)
MAIN_SIZE = 100
MULTITASK = ["mnist", "fashion_mnist"]
STRIP_ROWS = 5  # snapshots of D shown per solver, spread over the epochs
NOTE_KEYS = ("beyond", "solvers", "sizes", "options", "problems", "ai-tools")


@dataclass(frozen=True)
class DistillRuns:
    solvers: dict[str, Run]  # solver -> run at |D| = MAIN_SIZE
    baselines: dict[int, Run]  # |D| -> baselines run
    sizes: dict[int, Run]  # |D| -> best solver's run
    best: str
    options: dict[str, Run]  # "diversity" | "dsm" | "exact_sm" | "multitask" -> run of the best solver
    option_baselines: dict[str, Run]  # "dsm" | "exact_sm" | second task's name -> baselines run at |D| = MAIN_SIZE

    def roles(self) -> list[tuple[Run, str]]:
        listed = [(run, f"{SOLVER_NAMES[s]}, |D| = {run.config['size']}") for s, run in self.solvers.items()]
        listed += [(run, f"baselines, |D| = {n}") for n, run in self.baselines.items()]
        listed += [(run, f"{SOLVER_NAMES[self.best]}, |D| = {n}") for n, run in self.sizes.items() if n != MAIN_SIZE]
        listed += [(run, f"{SOLVER_NAMES[self.best]} + {OPTION_NAMES[key]}") for key, run in self.options.items()]
        listed += [(run, f"baselines, |D| = {MAIN_SIZE}, {OPTION_NAMES.get(key, key)}")
                   for key, run in self.option_baselines.items()]  # fmt: skip
        return listed


OPTION_NAMES = {"diversity": "diversity term", "dsm": "denoising score matching",
                "exact_sm": "exact score matching (trace term)",
                "multitask": "two tasks (MNIST digits and Fashion-MNIST)"}  # fmt: skip


def _last(metrics: dict[str, Metric], name: str) -> float:
    return metrics[name].values[-1]


def _spread(metric: Metric) -> tuple[float, float | None]:
    """Mean and standard deviation of a metric logged once per seed (no spread for one value)."""
    mean, std = metric.mean_std()
    return mean, (std if len(metric.values) > 1 else None)


def protocol_b(metrics: dict[str, Metric], tag: str = "") -> tuple[float, float | None]:
    """Protocol (b) of a run's final D: mean and std over its refits from ``eval_seeds`` inits
    (runs made before those existed: the last per-epoch refit, no spread)."""
    final = metrics.get(f"final_retrained_test_accuracy{tag}")
    return _spread(final) if final is not None else (_last(metrics, f"retrained_test_accuracy{tag}"), None)


def gather_runs(store: RunStore, scale: str) -> DistillRuns:
    """Find every run the report needs, running those the store lacks."""
    solvers = {solver: find_or_run(store, "distill", [scale, solver], {"size": MAIN_SIZE}) for solver in SOLVERS}
    best = max(SOLVERS, key=lambda s: protocol_b(store.metrics(solvers[s].id))[0])
    baselines = {n: find_or_run(store, "distill", [scale, "baselines"], {"size": n}) for n in SIZES}
    sizes = {n: solvers[best] if n == MAIN_SIZE else find_or_run(store, "distill", [scale, best], {"size": n})
             for n in SIZES}  # fmt: skip
    main = {"size": MAIN_SIZE}
    options = {
        "diversity": find_or_run(store, "distill", [scale, best, "with_diversity"], main),
        "dsm": find_or_run(store, "distill", [scale, best, "dsm"], main),
        "exact_sm": find_or_run(store, "distill", [scale, best, "exact_sm"], main),
    }
    # The random subset each option's D must beat: refitted with the same inner loss, on the same task.
    loss_options = ("dsm", "exact_sm")
    option_baselines = {key: find_or_run(store, "distill", [scale, "baselines", key], main) for key in loss_options}
    if scale != "smoke":  # the smoke scale's synthetic gratings have no second data set of their shape
        options["multitask"] = find_or_run(store, "distill", [scale, best], {**main, "tasks": MULTITASK})
        second = MULTITASK[1]
        option_baselines[second] = find_or_run(store, "distill", [scale, "baselines"], {**main, "tasks": [second]})
    return DistillRuns(solvers, baselines, sizes, best, options, option_baselines)


def build(store: RunStore, scale: str, out: Path) -> Path:
    """Find (or run) every run of the distillation report at ``scale`` and write the PDF to ``out``."""
    runs = gather_runs(store, scale)
    main = runs.solvers[runs.best]
    doc = Document(title="Unsupervised dataset distillation", report="distillation")
    context = {
        "doc": doc,
        "run": main,
        "runs": [{**run_summary(run), "role": role} for run, role in runs.roles()],
        "notes": {key: read_note("distillation", key) for key in NOTE_KEYS},
        "names": SOLVER_NAMES,
        "option_names": OPTION_NAMES,
        **report_sections(store, runs, doc),
    }
    return write_pdf(render_html("distillation.html", context), out)


def _at(metric: Metric, epoch: int) -> float | None:
    """The value logged at ``epoch`` (or the last one before it)."""
    before = [v for s, v in zip(metric.steps, metric.values, strict=True) if s <= epoch]
    return before[-1] if before else None


def _epoch_rows(metrics: dict[str, Metric], epochs: int) -> list[dict[str, Any]]:
    """The assignment's table: epoch, test accuracy, ||X - AE(X)||, at epoch 1, the middle and the end."""
    marks = sorted({1, epochs // 2, epochs} - {0})
    return [{"epoch": e, "course": _at(metrics["course_test_accuracy"], e),
             "retrained": _at(metrics["retrained_test_accuracy"], e), "recon": _at(metrics["recon_error"], e),
             "recon_d": _at(metrics["recon_error_D"], e)} for e in marks]  # fmt: skip


def _to_images(flat: np.ndarray) -> np.ndarray:
    """Rows of 784 values -> (N, 1, 28, 28) uint8, each image stretched to its own min..max."""
    x = flat.reshape(len(flat), 1, 28, 28).astype(float)
    low = x.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    return ((x - low) / span * 255).round().astype(np.uint8)


def report_sections(store: RunStore, runs: DistillRuns, doc: Document) -> dict[str, Any]:
    """Tables, figures and result sentences, in the order the template shows them."""
    metrics = {run.id: store.metrics(run.id) for run, _ in runs.roles()}
    base = metrics[runs.baselines[MAIN_SIZE].id]
    solver_rows = []
    for solver, run in runs.solvers.items():
        m = metrics[run.id]
        retrained, retrained_sd = protocol_b(m)
        solver_rows.append({"solver": solver, "name": SOLVER_NAMES[solver], "run": run.id,
                            "course": _last(m, "course_test_accuracy"), "retrained": retrained,
                            "retrained_sd": retrained_sd,
                            "recon": _last(m, "recon_error"), "recon_d": _last(m, "recon_error_D"),
                            "epochs": _epoch_rows(m, run.config["epochs"]),
                            "minutes": _minutes(run)})  # fmt: skip
    per_solver_tables = [doc.table(f"{row['name']}: the assignment's table (epoch, test accuracy, ‖X − AE(X)‖) "
                                   "under both protocols, protocol (b) from one refit of w per row.",
                                   runs.solvers[row["solver"]]) for row in solver_rows]  # fmt: skip
    subset, subset_sd = _spread(base["random_subset_test_accuracy"])
    draws = len(base["random_subset_test_accuracy"].values)
    baseline_rows = [
        {"name": f"Random real subset of {MAIN_SIZE} images" + (f" ({draws} draws)" if draws > 1 else ""),
         "accuracy": subset, "sd": subset_sd},
        {"name": f"All {runs.solvers[runs.best].info['train_images'][0]:,} real training images",
         "accuracy": _last(base, "all_real_test_accuracy"), "sd": None},
        {"name": "Random untrained features", "accuracy": _last(base, "random_features_test_accuracy"), "sd": None},
        {"name": "Raw pixels (linear probe)", "accuracy": _last(base, "pixels_test_accuracy"), "sd": None},
    ]  # fmt: skip
    comparison = doc.table(f"Protocol (b) at |D| = {MAIN_SIZE}: each solver's D against the baselines (real test "
                           "accuracy of a linear probe on features refitted on the set alone).",
                           *runs.solvers.values(), runs.baselines[MAIN_SIZE])  # fmt: skip
    best_row = next(r for r in solver_rows if r["solver"] == runs.best)

    size_rows = []
    for n, run in runs.sizes.items():
        retrained, retrained_sd = protocol_b(metrics[run.id])
        subset_n, subset_n_sd = _spread(metrics[runs.baselines[n].id]["random_subset_test_accuracy"])
        size_rows.append({"size": n, "run": run.id, "baseline_run": runs.baselines[n].id, "retrained": retrained,
                          "retrained_sd": retrained_sd, "subset": subset_n, "subset_sd": subset_n_sd,
                          "course": _last(metrics[run.id], "course_test_accuracy")})  # fmt: skip
    sizes_table = doc.table(f"Sizes of D ({SOLVER_NAMES[runs.best]}) against a random real subset of the same size, "
                            "protocol (b); protocol (a) beside it.", *runs.sizes.values(), *runs.baselines.values())  # fmt: skip

    def random_subset(key: str) -> dict[str, Any]:
        """The random subset a row's D is set against: same inner loss, same task (else the main baseline)."""
        run = runs.option_baselines.get(key, runs.baselines[MAIN_SIZE])
        mean, sd = _spread(metrics[run.id]["random_subset_test_accuracy"])
        return {"subset": mean, "subset_sd": sd, "subset_run": run.id}

    option_rows = [{"name": "none (the solver as above)", "run": best_row["run"], "course": best_row["course"],
                    "retrained": best_row["retrained"], "retrained_sd": best_row["retrained_sd"],
                    "recon": best_row["recon"], **random_subset("none")}]  # fmt: skip
    for key, run in runs.options.items():
        m = metrics[run.id]
        tasks = run.config["tasks"]
        suffix = "" if len(tasks) == 1 else f"_{tasks[0]}"
        retrained, retrained_sd = protocol_b(m, suffix)
        row = {"name": OPTION_NAMES[key], "run": run.id, "course": _last(m, f"course_test_accuracy{suffix}"),
               "retrained": retrained, "retrained_sd": retrained_sd, "recon": _last(m, "recon_error"),
               **random_subset(key)}  # fmt: skip
        if len(tasks) > 1:
            second, second_sd = protocol_b(m, f"_{tasks[1]}")
            row["second"] = {"task": tasks[1], "course": _last(m, f"course_test_accuracy_{tasks[1]}"),
                             "retrained": second, "retrained_sd": second_sd, **random_subset(tasks[1])}  # fmt: skip
        option_rows.append(row)
    options_table = doc.table(f"Options from the assignment, each added to {SOLVER_NAMES[runs.best]} at "
                              f"|D| = {MAIN_SIZE}; accuracies on {runs.solvers[runs.best].config['tasks'][0]}. "
                              "Each D is set against a random real subset of its size refitted with the same "
                              "inner loss, on the same task.",
                              runs.solvers[runs.best], *runs.options.values(), runs.baselines[MAIN_SIZE],
                              *runs.option_baselines.values())  # fmt: skip

    observations = []
    for row in solver_rows:
        m = metrics[row["run"]]["retrained_test_accuracy"]
        if len(m.values) > 1 and m.values[-1] < m.values[0]:
            observations.append(f"{row['name']}: protocol (b) fell from {100 * m.values[0]:.1f}% after epoch "
                                f"{m.steps[0]} to {100 * m.values[-1]:.1f}% after epoch {m.steps[-1]}, while protocol (a) "
                                f"ended at {100 * row['course']:.1f}%: what the jointly trained head uses is not what D "
                                "alone teaches a freshly fitted w.")  # fmt: skip
    diversity_run = runs.options["diversity"]
    recon_with = _last(metrics[diversity_run.id], "recon_error")
    if recon_with > 2 * best_row["recon"]:
        observations.append(f"The diversity term spread D apart and raised ‖X − AE(X)‖ on real images from "
                            f"{best_row['recon']:.2f} to {recon_with:.2f} (run {diversity_run.id}).")  # fmt: skip
    exact = runs.options["exact_sm"]
    norms = {key: float(np.linalg.norm(read_npz(store, run.id, "distilled.npz")["W"], axis=0).mean())
             for key, run in (("plain", runs.solvers[runs.best]), ("exact", exact))}  # fmt: skip
    exact_subset = random_subset("exact_sm")["subset"]
    random_features = _last(base, "random_features_test_accuracy")
    if norms["exact"] < 0.5 * norms["plain"]:
        observations.append(f"Exact score matching kept the filters small (mean column norm of W {norms['exact']:.2f} "
                            f"against {norms['plain']:.2f} without the trace term; runs {exact.id}, "
                            f"{runs.solvers[runs.best].id}): with σ² = {exact.config['sigma2']:g}, wider than the "
                            "pixels' spread, the Gaussian part already covers the data and the hidden units, which "
                            "can only widen the density, have little to add. Refitted on a random real subset it "
                            f"scores {100 * exact_subset:.1f}%, random features {100 * random_features:.1f}%.")  # fmt: skip
    return {
        "observations": observations,
        "solver_rows": solver_rows, "per_solver_tables": per_solver_tables, "baseline_rows": baseline_rows,
        "comparison": comparison, "best": best_row, "subset": subset, "subset_sd": subset_sd,
        "beats_subset_by": best_row["retrained"] - subset, "subset_draws": draws,
        "best_seeds": runs.solvers[runs.best].config.get("eval_seeds", 1),
        "size_rows": size_rows, "sizes_table": sizes_table, "option_rows": option_rows, "options_table": options_table,
        "figures": _figures(store, runs, metrics, doc), "baseline_run": runs.baselines[MAIN_SIZE].id,
        "supervised": _last(base, "supervised_test_accuracy"),
        "diversity_weight": runs.options["diversity"].config["diversity"], "dsm_noise": runs.options["dsm"].config["noise"],
        "multitask": "multitask" in runs.options,
    }  # fmt: skip


def _minutes(run: Run) -> float | None:
    summary = run_summary(run)
    if not summary["duration"]:
        return None
    h, m, s = (int(x) for x in summary["duration"].split(":"))
    return h * 60 + m + s / 60


def _figures(store: RunStore, runs: DistillRuns, metrics: dict[str, dict[str, Metric]], doc: Document) -> dict:
    best_run = runs.solvers[runs.best]
    curves = doc.figure(figures.to_data_uri(_curves(runs, metrics), "svg"),
                        "Training progress of the three solvers: real test accuracy under protocol (a) (lines) and "
                        "(b) (markers), and the penalty term (log scale).", *runs.solvers.values())  # fmt: skip
    strips = []
    for solver, run in runs.solvers.items():
        saved = read_npz(store, run.id, "distilled.npz")
        picks = np.unique(np.linspace(0, len(saved["snapshot_epochs"]) - 1, STRIP_ROWS).round().astype(int))
        snaps, epochs = saved["snapshots"][picks], saved["snapshot_epochs"][picks]
        shown = min(10, snaps.shape[1])
        rows = [list(_to_images(snap[:shown])) for snap in snaps]
        fig = figures.image_grid(rows, row_labels=[f"epoch {e}" for e in epochs], cell_in=0.42)
        strips.append(doc.figure(figures.to_data_uri(fig, "png"),
                                 f"{SOLVER_NAMES[solver]}: the first {shown} images of D over the epochs (rows), "
                                 "each stretched to its own grey range.", run, width=60))  # fmt: skip
    saved = read_npz(store, best_run.id, "distilled.npz")
    final = _to_images(saved["D"])
    columns = 20
    rows = [list(final[i : i + columns]) for i in range(0, min(len(final), 100), columns)]
    final_figure = doc.figure(figures.to_data_uri(figures.image_grid(rows, cell_in=0.32), "png"),
                              f"{SOLVER_NAMES[runs.best]}: the distilled set D after the last epoch "
                              f"({len(final)} images, each stretched to its own grey range).", best_run)  # fmt: skip
    filters = _to_images(saved["W"].T)
    rows = [list(filters[i : i + 16]) for i in range(0, len(filters), 16)]
    filter_figure = doc.figure(figures.to_data_uri(figures.image_grid(rows, cell_in=0.32), "png"),
                               f"{SOLVER_NAMES[runs.best]}: the {len(filters)} columns of W (the feature extractor's "
                               "filters) as 28×28 images, each stretched to its own range.", best_run)  # fmt: skip
    return {"strips": strips, "final": final_figure, "filters": filter_figure, "curves": curves}


def _curves(runs: DistillRuns, metrics: dict[str, dict[str, Metric]]):
    fig, (left, right) = plt.subplots(1, 2, figsize=(figures.WIDTH_IN, 2.4))
    for (solver, run), color in zip(runs.solvers.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        m = metrics[run.id]
        a, b, p = m["course_test_accuracy"], m["retrained_test_accuracy"], m["penalty"]
        left.plot(a.steps, a.values, color=color, linewidth=1.2, label=f"{SOLVER_NAMES[solver]} (a)")
        left.plot(b.steps, b.values, "o--", color=color, markersize=3, linewidth=0.8, label="(b)")
        right.plot(p.steps, np.maximum(np.asarray(p.values), 1e-12), color=color, linewidth=1.2,
                   label=SOLVER_NAMES[solver])  # fmt: skip
    left.set_xlabel("epoch")
    left.set_ylabel("real test accuracy")
    left.grid(alpha=0.3)
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("penalty term (epoch mean)")
    right.grid(alpha=0.3)
    left.legend(fontsize=5.5, ncol=1)
    fig.tight_layout()
    return fig

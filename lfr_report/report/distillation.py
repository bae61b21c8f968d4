"""The dataset-distillation project report (lfr2024 "Unsupervised dataset distillation").

"What to submit" asks for a short report of what was done beyond the baseline code, with
visualisations of the distilled set and the training progress, and the problems and
surprises met. Runs it needs, found in the store or run (each at the report's scale):

=====================  =========================================================================
three solvers          ``distill with <scale> penalty`` / ``value`` / ``implicit`` (|D| = 100)
baselines              ``distill with <scale> baselines size=<n>`` for every |D| shown
sizes of D             ``distill with <scale> <best solver> size=<n>`` for n in SIZES
options                ``... with_diversity``, ``... dsm``, ``... exact_sm``, ``... wide`` (256 hidden
                       units) and (not at smoke scale) two tasks
their baselines        ``distill with <scale> baselines dsm`` / ``exact_sm`` / ``wide`` /
                       ``data.name=fashion_mnist``: the random subset refitted with the option's
                       inner learner and loss, on its second task
=====================  =========================================================================

The best solver is the one with the highest protocol-(b) accuracy at |D| = 100; the
size sweep and the options use it. Every number comes from those runs, and the two
targets of issue 18 (``_targets``) are judged on them, each with the runs it rests on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lfr_report import names
from lfr_report.distill import SOLVERS
from lfr_report.distill.ambiguity import AMBIGUITY_METRICS, canonical_order
from lfr_report.report import figures
from lfr_report.report.document import Document, run_seconds
from lfr_report.report.figures import Panel, line
from lfr_report.report.spec import After, Need, Report, Runs
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import Metric, Run, RunStore

SOLVER_NAMES = {"penalty": "Quadratic penalty", "value": "Optimal-value reformulation",
                "implicit": "Implicit differentiation"}  # fmt: skip
SIZES = (10, 50, 100, 500)
MAIN_SIZE = 100
SECOND_TASK = "fashion_mnist"  # the multi-task option distils the main task and this one into one D
STRIP_ROWS = 5  # snapshots of D shown per solver, spread over the epochs
OPTION_NAMES = {"diversity": "diversity term", "prior": "a prior on D (Gaussian fitted to the real images)",
                "dsm": "denoising score matching", "exact_sm": "exact score matching (trace term)",
                "wide": "a wider inner learner (256 hidden units)",
                "two_layers": "two stacked layers, meta-learned together",
                "multitask": "two tasks (MNIST and Fashion-MNIST)",
                "fashion_target": "Fashion-MNIST as the target (accuracies on Fashion-MNIST)"}  # fmt: skip
# Options that change the inner learner or its loss: their random subset (and protocol (a)'s ceiling) is refitted with it.
LOSS_OPTIONS = ("dsm", "exact_sm", "wide", "two_layers")
# Options on another task: their random subset is that task's (the baselines run of key ``baselines_<task>``).
OPTION_TASKS = {"fashion_target": SECOND_TASK}

# The targets the report is held to (issue 18), not results: the seed's reference table gives 94.1% (quadratic
# penalty, 200 epochs) under protocol (a); if the same network trained with labels and no D stays under 94.5%, the
# target is to come within a point of that ceiling instead. Under protocol (b) the best D of MAIN_SIZE images must beat
# a random real subset of its size by two points and reach the same learner fitted on all the real training images.
COURSE_TARGET = 0.941
CEILING_BAR = 0.945
CEILING_MARGIN = 0.01
SUBSET_MARGIN = 0.02


def _spread(metric: Metric) -> tuple[float, float | None]:
    """Mean and standard deviation of a metric logged once per seed (no spread for one value)."""
    mean, std = metric.mean_std()
    return mean, (std if len(metric.values) > 1 else None)


def protocol_b(metrics: dict[str, Metric], tag: str = "") -> tuple[float, float | None]:
    """Protocol (b) of a run's final D: mean and std over its refits from ``eval_seeds`` inits
    (runs made before those existed: the last per-epoch refit, no spread)."""
    final = metrics.get(names.FINAL_RETRAINED_TEST_ACCURACY + tag)
    return _spread(final) if final is not None else (metrics[names.RETRAINED_TEST_ACCURACY + tag].last, None)


def tasks(run: Run) -> list[str]:
    """The data sets a distillation run's D serves: its ``data.name``, and its ``second_task`` if any."""
    second = run.config.get("second_task")
    return [run.config["data"]["name"], *([second] if second else [])]


def _best_solver(store: RunStore, *solver_runs: Run) -> str:
    """The solver whose D scores highest under protocol (b) at |D| = MAIN_SIZE."""
    return max(zip(SOLVERS, solver_runs, strict=True), key=lambda sr: protocol_b(store.metrics(sr[1].id))[0])[0]


BEST = After(tuple(SOLVERS), _best_solver, shown="<best solver>")
# Several layers work with the penalty and value solvers: the best of those two.
BEST_LAYERED = After(tuple(SOLVERS), lambda store, *runs: max(("penalty", "value"), key=lambda s: protocol_b(
    store.metrics(runs[SOLVERS.index(s)].id))[0]), shown="<best of penalty and value>")  # fmt: skip


def needs(scale: str) -> list[Need]:
    main = {"size": MAIN_SIZE}

    table = {"eval_every": 0}  # runs without a curve in the report: protocol (b) at the epoch table's marks only

    def best(text: str, after: After = BEST):
        """A role naming the best solver, which the run itself records (``<best solver>`` in the manual)."""

        def role_of(key: str):
            def role(runs: Runs) -> str:
                return text.format(SOLVER_NAMES[runs[key].config["solver"]])

            role.shown = text.format(str(after))  # type: ignore[attr-defined]
            return role

        return role_of

    listed = [Need(s, "distill", [scale, s], main, role=f"{SOLVER_NAMES[s]}, |D| = {MAIN_SIZE}") for s in SOLVERS]
    listed += [Need(f"baselines_{n}", "distill", [scale, "baselines"], {"size": n}, role=f"baselines, |D| = {n}")
               for n in SIZES]  # fmt: skip
    listed += [Need(f"size_{n}", "distill", [scale, BEST], {"size": n, **table}, role=best(f"{{}}, |D| = {n}")(f"size_{n}"))
               for n in SIZES if n != MAIN_SIZE]  # fmt: skip
    options = {"diversity": [scale, BEST, "with_diversity"], "prior": [scale, BEST, "with_prior"],
               "dsm": [scale, BEST, "dsm"], "exact_sm": [scale, BEST, "exact_sm"], "wide": [scale, BEST, "wide"],
               "two_layers": [scale, BEST_LAYERED, "two_layers"]}  # fmt: skip
    listed += [
        Need(key, "distill", named, {**main, **table}, role=best(f"{{}} + {OPTION_NAMES[key]}", named[1])(key))
        for key, named in options.items()
    ]
    # The random subset each option's D must beat: refitted with the same inner loss, on the same task.
    listed += [Need(f"baselines_{key}", "distill", [scale, "baselines", key], main,
                    role=f"baselines, |D| = {MAIN_SIZE}, {OPTION_NAMES[key]}") for key in LOSS_OPTIONS]  # fmt: skip
    if scale != "smoke":  # the smoke scale's synthetic gratings have no second data set of their shape
        listed += [
            Need("multitask", "distill", [scale, BEST], {**main, **table, "second_task": SECOND_TASK},
                 role=best(f"{{}} + {OPTION_NAMES['multitask']}")("multitask")),
            Need("fashion_target", "distill", [scale, BEST], {**main, **table, "data.name": SECOND_TASK},
                 role=best(f"{{}} + {OPTION_NAMES['fashion_target']}")("fashion_target")),
            Need(f"baselines_{SECOND_TASK}", "distill", [scale, "baselines"], {**main, "data.name": SECOND_TASK},
                 role=f"baselines, |D| = {MAIN_SIZE}, {SECOND_TASK}"),
        ]  # fmt: skip
    return listed


def _epoch_rows(metrics: dict[str, Metric], epochs: int) -> list[dict[str, Any]]:
    """The assignment's table: epoch, test accuracy, ||X - AE(X)||, at epoch 1, the middle and the end."""
    marks = sorted({1, epochs // 2, epochs} - {0})
    return [{"epoch": e, "course": _at(metrics[names.COURSE_TEST_ACCURACY], e),
             "retrained": _at(metrics[names.RETRAINED_TEST_ACCURACY], e), "recon": _at(metrics[names.RECON_ERROR], e),
             "recon_d": _at(metrics[names.RECON_ERROR_D], e)} for e in marks]  # fmt: skip


def _at(metric: Metric, epoch: int) -> float | None:
    """The value logged at ``epoch`` (or the last one before it)."""
    before = [v for s, v in zip(metric.steps, metric.values, strict=True) if s <= epoch]
    return before[-1] if before else None


def _to_images(flat: np.ndarray) -> np.ndarray:
    """Rows of 784 values -> (N, 1, 28, 28) uint8, each image stretched to its own min..max."""
    x = flat.reshape(len(flat), 1, 28, 28).astype(float)
    low = x.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    return ((x - low) / span * 255).round().astype(np.uint8)


def sections(store: RunStore, runs: Runs, doc: Document) -> dict[str, Any]:
    """Tables, figures and result numbers, in the order the template shows them."""
    best = BEST.resolve(store, runs)
    solvers = {s: runs[s] for s in SOLVERS}
    baselines = {n: runs[f"baselines_{n}"] for n in SIZES}
    sizes = {n: runs[best] if n == MAIN_SIZE else runs[f"size_{n}"] for n in SIZES}
    options = {key: runs[key] for key in OPTION_NAMES if key in runs}
    option_baselines = {
        key: runs[f"baselines_{key}"] for key in (*LOSS_OPTIONS, SECOND_TASK) if f"baselines_{key}" in runs
    }
    metrics = {run.id: store.metrics(run.id) for run in runs.values()}
    base = metrics[baselines[MAIN_SIZE].id]
    solver_rows = []
    for solver, run in solvers.items():
        m = metrics[run.id]
        retrained, retrained_sd = protocol_b(m)
        seconds = run_seconds(run)
        solver_rows.append({"solver": solver, "name": SOLVER_NAMES[solver], "run": run.id,
                            "course": m[names.COURSE_TEST_ACCURACY].last, "retrained": retrained,
                            "retrained_sd": retrained_sd,
                            "recon": m[names.RECON_ERROR].last, "recon_d": m[names.RECON_ERROR_D].last,
                            "epochs": _epoch_rows(m, run.config["epochs"]),
                            "minutes": int(seconds) / 60 if seconds is not None else None})  # fmt: skip
    per_solver_tables = [doc.table(f"{row['name']}: the assignment's table (epoch, test accuracy, ‖X − AE(X)‖) "
                                   "under both protocols, protocol (b) from one refit of w per row.",
                                   solvers[row["solver"]]) for row in solver_rows]  # fmt: skip
    subset, subset_sd = _spread(base[names.RANDOM_SUBSET_TEST_ACCURACY])
    draws = len(base[names.RANDOM_SUBSET_TEST_ACCURACY].values)
    baseline_rows = [
        {"name": f"Random real subset of {MAIN_SIZE} images" + (f" ({draws} draws)" if draws > 1 else ""),
         "accuracy": subset, "sd": subset_sd},
        {"name": f"All {solvers[best].info['train_images'][0]:,} real training images",
         "accuracy": base[names.ALL_REAL_TEST_ACCURACY].last, "sd": None},
        {"name": "Random untrained features", "accuracy": base[names.RANDOM_FEATURES_TEST_ACCURACY].last, "sd": None},
        {"name": "Raw pixels (linear probe)", "accuracy": base[names.PIXELS_TEST_ACCURACY].last, "sd": None},
    ]  # fmt: skip
    comparison = doc.table(f"Protocol (b) at |D| = {MAIN_SIZE}: each solver's D against the baselines (real test "
                           "accuracy of a linear probe on features refitted on the set alone).",
                           *solvers.values(), baselines[MAIN_SIZE])  # fmt: skip
    best_row = next(r for r in solver_rows if r["solver"] == best)

    size_rows = []
    for n, run in sizes.items():
        retrained, retrained_sd = protocol_b(metrics[run.id])
        subset_n, subset_n_sd = _spread(metrics[baselines[n].id][names.RANDOM_SUBSET_TEST_ACCURACY])
        size_rows.append({"size": n, "run": run.id, "baseline_run": baselines[n].id, "retrained": retrained,
                          "retrained_sd": retrained_sd, "subset": subset_n, "subset_sd": subset_n_sd,
                          "course": metrics[run.id][names.COURSE_TEST_ACCURACY].last})  # fmt: skip
    sizes_table = doc.table(f"Sizes of D ({SOLVER_NAMES[best]}) against a random real subset of the same size, "
                            "protocol (b); protocol (a) beside it.", *sizes.values(), *baselines.values())  # fmt: skip

    def random_subset(key: str) -> dict[str, Any]:
        """The random subset a row's D is set against: same inner loss, same task (else the main baseline)."""
        run = option_baselines.get(OPTION_TASKS.get(key, key), baselines[MAIN_SIZE])
        return _subset_of(metrics[run.id], run.id)

    option_rows = [{"name": "none (the solver as above)", "run": best_row["run"], "course": best_row["course"],
                    "retrained": best_row["retrained"], "retrained_sd": best_row["retrained_sd"],
                    "recon": best_row["recon"], **random_subset("none")}]  # fmt: skip
    for key, run in options.items():
        m = metrics[run.id]
        served = tasks(run)
        suffix = "" if len(served) == 1 else f"_{served[0]}"
        retrained, retrained_sd = protocol_b(m, suffix)
        row = {"name": OPTION_NAMES[key], "run": run.id, "course": m[names.COURSE_TEST_ACCURACY + suffix].last,
               "retrained": retrained, "retrained_sd": retrained_sd, "recon": m[names.RECON_ERROR].last,
               **random_subset(key)}  # fmt: skip
        if len(served) > 1:
            second, second_sd = protocol_b(m, f"_{served[1]}")
            row["second"] = {"task": served[1], "course": m[f"{names.COURSE_TEST_ACCURACY}_{served[1]}"].last,
                             "retrained": second, "retrained_sd": second_sd, **random_subset(served[1])}  # fmt: skip
        option_rows.append(row)
    options_table = doc.table(f"Options from the assignment, each added to {SOLVER_NAMES[best]} at "
                              f"|D| = {MAIN_SIZE}; accuracies on {tasks(solvers[best])[0]}. "
                              "Each D is set against a random real subset of its size refitted with the same "
                              "inner loss, on the same task.",
                              solvers[best], *options.values(), baselines[MAIN_SIZE],
                              *option_baselines.values())  # fmt: skip

    targets = _targets(solver_rows, option_rows, base, baselines[MAIN_SIZE].id, metrics)
    checked = [
        (SOLVER_NAMES[k] if k in solvers else OPTION_NAMES[k], run)
        for k, run in {**solvers, **options}.items()
        if AMBIGUITY_METRICS[0] in metrics[run.id]
    ]  # runs made before the check existed did not log it
    ambiguity_rows = [_ambiguity_row(name, run, metrics[run.id]) for name, run in checked]
    ambiguity_table = doc.table("The ambiguity between w and D, measured on each final D: the largest change of the "
                                "hidden units and of the inner loss, relative to their largest value, when D's images "
                                "are turned by a random orthogonal Q, bent by an invertible one or reordered; and "
                                "protocol (b) (first refit seed) on D, on the turned D and on the reordered D.",
                                *(run for _, run in checked)) if checked else None  # fmt: skip
    prior_run = options.get("prior")
    prior = None
    if prior_run is not None and names.PRIOR_NLL in metrics[prior_run.id]:
        nll = metrics[prior_run.id][names.PRIOR_NLL]
        prior = {"run": prior_run.id, "weight": prior_run.config["prior"], "components": prior_run.config[
            "prior_components"], "first": nll.values[0], "last": nll.last, "epochs": prior_run.config["epochs"]}  # fmt: skip

    # What the "Problems and surprises" section points out, when the runs show it.
    fell = []
    for row in solver_rows:
        m = metrics[row["run"]][names.RETRAINED_TEST_ACCURACY]
        if len(m.values) > 1 and m.values[-1] < m.values[0]:
            fell.append({"name": row["name"], "first": m.values[0], "first_epoch": m.steps[0], "last": m.values[-1],
                         "last_epoch": m.steps[-1], "course": row["course"]})  # fmt: skip
    diversity_run = options["diversity"]
    exact = options["exact_sm"]
    norms = {key: float(np.linalg.norm(read_npz(store, run.id, names.DISTILLED)["W"], axis=0).mean())
             for key, run in (("plain", solvers[best]), ("exact", exact))}  # fmt: skip
    return {
        "run": solvers[best], "tasks": tasks(solvers[best]), "names": SOLVER_NAMES, "option_names": OPTION_NAMES,
        "fell": fell,
        "diversity": {"run": diversity_run.id, "recon": metrics[diversity_run.id][names.RECON_ERROR].last},
        "exact": {"run": exact.id, "sigma2": exact.config["sigma2"], "norm": norms["exact"], "plain_norm": norms["plain"],
                  "subset": random_subset("exact_sm")["subset"]},
        "random_features": base[names.RANDOM_FEATURES_TEST_ACCURACY].last,
        "solver_rows": solver_rows, "per_solver_tables": per_solver_tables, "baseline_rows": baseline_rows,
        "comparison": comparison, "best": best_row, "subset": subset, "subset_sd": subset_sd,
        "beats_subset_by": best_row["retrained"] - subset, "subset_draws": draws,
        "best_seeds": solvers[best].config.get("eval_seeds", 1),
        "size_rows": size_rows, "sizes_table": sizes_table, "option_rows": option_rows, "options_table": options_table,
        "figures": _figures(store, solvers, best, doc), "baseline_run": baselines[MAIN_SIZE].id,
        "supervised": base[names.SUPERVISED_TEST_ACCURACY].last,
        "diversity_weight": diversity_run.config["diversity"], "dsm_noise": options["dsm"].config["noise"],
        "multitask": "multitask" in options, "targets": targets, "ambiguity_rows": ambiguity_rows,
        "ambiguity_table": ambiguity_table, "prior": prior,
        "prior_figure": _final_d(store, prior_run, doc, "With the prior: D after the last epoch", 40) if prior else None,
    }  # fmt: skip


def _targets(solver_rows: list[dict], option_rows: list[dict], base: dict[str, Metric], base_run: str,
             metrics: dict[str, dict[str, Metric]]) -> dict[str, Any]:  # fmt: skip
    """Both targets with the numbers and runs they rest on, and whether each holds.

    (a): the best solver's protocol-(a) accuracy against COURSE_TARGET, or, when protocol (a)'s
    ceiling (the same 64-unit network trained on the labels alone) is under CEILING_BAR,
    against that ceiling less CEILING_MARGIN. (b): every D of MAIN_SIZE images (each solver,
    each option) against its own learner's random subset and all-real fit; it holds if one
    D beats its subset by SUBSET_MARGIN and reaches its all-real accuracy."""
    ceiling = base[names.SUPERVISED_TEST_ACCURACY].last
    bar = COURSE_TARGET if ceiling >= CEILING_BAR else ceiling - CEILING_MARGIN
    best_a = max(solver_rows, key=lambda r: r["course"])
    rows_b = []
    for row in [*({**r, **_subset_of(base, base_run)} for r in solver_rows), *option_rows[1:]]:
        subset_metrics = metrics[row["subset_run"]]
        all_real = subset_metrics[names.ALL_REAL_TEST_ACCURACY].last
        margin = row["retrained"] - row["subset"]
        rows_b.append({"name": row["name"], "run": row["run"], "retrained": row["retrained"],
                       "retrained_sd": row["retrained_sd"], "subset": row["subset"], "subset_sd": row["subset_sd"],
                       "subset_run": row["subset_run"], "all_real": all_real, "margin": margin,
                       "holds": margin >= SUBSET_MARGIN and row["retrained"] >= all_real})  # fmt: skip
    best_b = max(rows_b, key=lambda r: (r["holds"], r["margin"]))
    return {
        "a": {"target": COURSE_TARGET, "bar": bar, "ceiling": ceiling, "ceiling_run": base_run,
              "ceiling_bar": CEILING_BAR, "margin": CEILING_MARGIN, "by_ceiling": ceiling < CEILING_BAR,
              "best": best_a, "holds": best_a["course"] >= bar},
        "b": {"rows": rows_b, "best": best_b, "holds": best_b["holds"], "margin": SUBSET_MARGIN, "size": MAIN_SIZE},
    }  # fmt: skip


def _ambiguity_row(name: str, run: Run, metrics: dict[str, Metric]) -> dict[str, Any]:
    """A run's measured ambiguity, beside protocol (b) of its own D at the same refit seed (the first)."""
    suffix = "" if len(tasks(run)) == 1 else f"_{tasks(run)[0]}"
    refit = metrics[names.FINAL_RETRAINED_TEST_ACCURACY + suffix].values[0]
    return {"name": name, "run": run.id, "refit": refit, **{key: metrics[key].last for key in AMBIGUITY_METRICS}}


def _subset_of(metrics: dict[str, Metric], run_id: str) -> dict[str, Any]:
    """A baselines run's random subset: mean, std over its draws, and the run."""
    mean, sd = _spread(metrics[names.RANDOM_SUBSET_TEST_ACCURACY])
    return {"subset": mean, "subset_sd": sd, "subset_run": run_id}


REPORT = Report(
    name="distillation",
    title="Unsupervised dataset distillation",
    template="distillation.html",
    note_keys=("beyond", "solvers", "sizes", "options", "problems", "ai-tools"),
    needs=needs,
    sections=sections,
)


def _figures(store: RunStore, solvers: dict[str, Run], best: str, doc: Document) -> dict:
    best_run = solvers[best]
    curves = doc.figure(figures.to_data_uri(_curves(store, solvers), "svg"),
                        "Training progress of the three solvers: real test accuracy under protocol (a) (lines) and "
                        "(b) (markers), and the penalty term (log scale).", *solvers.values())  # fmt: skip
    strips = []
    for solver, run in solvers.items():
        saved = read_npz(store, run.id, names.DISTILLED)
        picks = np.unique(np.linspace(0, len(saved["snapshot_epochs"]) - 1, STRIP_ROWS).round().astype(int))
        snaps, epochs = saved["snapshots"][picks], saved["snapshot_epochs"][picks]
        shown = min(10, snaps.shape[1])
        order = canonical_order(snaps[-1])[:shown]  # the same images in every row, chosen by the final D's order
        rows = [list(_to_images(snap[order])) for snap in snaps]
        fig = figures.image_grid(rows, row_labels=[f"epoch {e}" for e in epochs], cell_in=0.42)
        strips.append(doc.figure(figures.to_data_uri(fig, "png"),
                                 f"{SOLVER_NAMES[solver]}: {shown} images of D over the epochs (rows), the first "
                                 "of the final D's canonical order, each stretched to its own grey range.", run, width=60))  # fmt: skip
    saved = read_npz(store, best_run.id, names.DISTILLED)
    final_figure = _final_d(store, best_run, doc, f"{SOLVER_NAMES[best]}: the distilled set D after the last epoch")
    filters = _to_images(saved["W"].T)
    rows = [list(filters[i : i + 16]) for i in range(0, len(filters), 16)]
    filter_figure = doc.figure(figures.to_data_uri(figures.image_grid(rows, cell_in=0.32), "png"),
                               f"{SOLVER_NAMES[best]}: the {len(filters)} columns of W (the feature extractor's "
                               "filters) as 28×28 images, each stretched to its own range.", best_run)  # fmt: skip
    return {"strips": strips, "final": final_figure, "filters": filter_figure, "curves": curves}


def _final_d(store: RunStore, run: Run, doc: Document, title: str, shown: int = 100) -> Any:
    """A run's final D as a grid, in canonical order (``distill.ambiguity.canonical_order``)."""
    D = read_npz(store, run.id, names.DISTILLED)["D"]
    final = _to_images(D[canonical_order(D)])[:shown]
    columns = 20
    rows = [list(final[i : i + columns]) for i in range(0, len(final), columns)]
    return doc.figure(figures.to_data_uri(figures.image_grid(rows, cell_in=0.32), "png"),
                      f"{title} (the first {len(final)} of its {len(D)} images in canonical order, each stretched to "
                      "its own grey range).", run)  # fmt: skip


def _curves(store: RunStore, solvers: dict[str, Run]):
    accuracy, penalty = [], []
    for (solver, run), color in zip(solvers.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        m = store.metrics(run.id)
        a, b, p = m[names.COURSE_TEST_ACCURACY], m[names.RETRAINED_TEST_ACCURACY], m[names.PENALTY]
        accuracy += [line(a.steps, a.values, color=color, linewidth=1.2, label=f"{SOLVER_NAMES[solver]} (a)"),
                     line(b.steps, b.values, "o--", color=color, markersize=3, linewidth=0.8, label="(b)")]  # fmt: skip
        penalty.append(line(p.steps, np.maximum(np.asarray(p.values), 1e-12), color=color, linewidth=1.2,
                            label=SOLVER_NAMES[solver]))  # fmt: skip
    panels = [Panel(accuracy, "epoch", "real test accuracy", legend={"fontsize": 5.5, "ncol": 1}),
              Panel(penalty, "epoch", "penalty term (epoch mean)", yscale="log")]  # fmt: skip
    return figures.line_panels(panels, (figures.WIDTH_IN, 2.4))

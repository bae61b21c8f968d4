"""Figure makers: each takes plain arrays and returns a matplotlib ``Figure``.

``to_data_uri`` turns a figure into an inline image for the HTML: SVG for line plots
(crisp at any zoom), PNG for scatter plots of thousands of points (small and fast to
render).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

WIDTH_IN = 6.3  # text width of an A4 page with our margins, in inches

plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.labelsize": 8,
        "legend.fontsize": 7,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.fonttype": "none",
    }
)


def to_data_uri(fig: Figure, fmt: str = "svg", dpi: int = 200) -> str:
    """Render ``fig`` as a ``data:`` URI (``svg`` or ``png``) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (shorter at the start), same length as ``values``."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def train_test_curve(
    train_steps: Sequence[int],
    train_values: Sequence[float],
    test_steps: Sequence[int],
    test_values: Sequence[float],
    title: str,
    ylabel: str,
    steps_per_epoch: int | None = None,
) -> Figure:
    """One objective over training: every training batch (faint), its moving average, and the
    test-set value once per epoch (markers). A secondary axis marks epochs when known."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.25))
    train_steps, train_values = np.asarray(train_steps), np.asarray(train_values, dtype=float)
    window = max(1, len(train_values) // 50)
    ax.plot(
        train_steps,
        train_values,
        color="tab:blue",
        alpha=0.25,
        linewidth=0.6,
        label="train, per batch",
    )
    if window > 1:
        ax.plot(train_steps, moving_average(train_values, window), color="tab:blue", linewidth=1.2,
                label=f"train, mean of last {window} batches")  # fmt: skip
    ax.plot(
        test_steps,
        test_values,
        "o-",
        color="tab:orange",
        markersize=4,
        linewidth=1.2,
        label="test, end of each epoch",
    )
    ax.set_title(title)
    ax.set_xlabel("training batch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=3, frameon=False)
    if steps_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def scatter_by_class(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], class_names: Sequence[str]) -> Figure:
    """Side-by-side 2-D scatter plots, one per ``(title, points, labels)``, coloured by class, one shared legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH_IN, 0.8 * WIDTH_IN / len(panels) + 0.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, points, labels) in zip(axes[0], panels, strict=True):
        for k, name in enumerate(class_names):
            mine = labels == k
            ax.scatter(
                points[mine, 0],
                points[mine, 1],
                s=1.5,
                color=colours(k % 10),
                label=name,
                linewidths=0,
                rasterized=True,
            )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(class_names)), markerscale=5, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def _show_image(ax, image: np.ndarray) -> None:
    """Draw one (C, H, W) uint8 image without axes."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(np.transpose(image, (1, 2, 0)))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str] = (),
    column_titles: Sequence[str] = (),
    cell_notes: Sequence[Sequence[str]] = (),
    highlight: Sequence[Sequence[bool]] = (),
    cell_in: float = 0.5,
) -> Figure:
    """A grid of (C, H, W) uint8 images; optional row labels, column titles, a small note
    under each cell, and a red frame on highlighted cells. Empty cells (None) stay blank."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * cell_in + 0.9, n_rows * (cell_in + 0.12) + 0.3),
                             squeeze=False)  # fmt: skip
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            image = row[c] if c < len(row) else None
            if image is None:
                ax.axis("off")
                continue
            _show_image(ax, image)
            if highlight and highlight[r][c]:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("red")
                    spine.set_linewidth(1.5)
            if cell_notes and cell_notes[r][c]:
                ax.set_xlabel(cell_notes[r][c], fontsize=5, labelpad=1)
        if row_labels:
            axes[r][0].set_ylabel(row_labels[r], fontsize=6, rotation=0, ha="right", va="center", labelpad=4)
    for c, title in enumerate(column_titles):
        axes[0][c].set_title(title, fontsize=6)
    fig.subplots_adjust(wspace=0.08, hspace=0.35, left=0.14, right=0.99, top=0.93, bottom=0.02)
    return fig


def roc_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], title: str) -> Figure:
    """ROC curves ``(name, fpr, tpr, auc)`` on one plot, the AUC in each legend entry."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.62, WIDTH_IN * 0.5))
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, linewidth=1.4, label=f"{name} (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="chance (AUC = 0.5)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def cluster_maps(
    points: np.ndarray,
    assignments: np.ndarray,
    labels: np.ndarray,
    centres: np.ndarray,
    class_names: Sequence[str],
    title: str,
) -> Figure:
    """Two t-SNE panels side by side: coloured by k-means cluster, and by true class; the
    cluster centres (embedded with the points) drawn in black on both."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 0.8 * WIDTH_IN / 2 + 0.55))
    colours = plt.get_cmap("tab10")
    for ax, values, panel in ((axes[0], assignments, "by k-means cluster"), (axes[1], labels, "by true class")):
        ax.scatter(
            points[:, 0], points[:, 1], s=1.5, c=[colours(v % 10) for v in values], linewidths=0, rasterized=True
        )
        ax.scatter(centres[:, 0], centres[:, 1], s=28, c="black", marker="X", linewidths=0.5, edgecolors="white",
                   label="cluster centres")  # fmt: skip
        ax.set_title(f"{title}: {panel}")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=colours(k % 10), label=n) for k, n in enumerate(class_names)
    ]
    handles.append(plt.Line2D([], [], marker="X", linestyle="", color="black", label="cluster centre"))
    fig.legend(handles=handles, loc="lower center", ncol=6, frameon=False, fontsize=6,
               title="colours of the right panel (true classes); on the left they only tell clusters apart",
               title_fontsize=6)  # fmt: skip
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


@dataclass(frozen=True)
class Line:
    """One series of a panel: ``ax.plot(x, y, fmt, **style)``, or ``ax.errorbar`` when ``yerr`` is given."""

    x: Sequence[float]
    y: Sequence[float]
    fmt: str = ""
    style: dict = field(default_factory=dict)  # matplotlib keywords: color, linewidth, markersize, label, ...
    yerr: Sequence[float] | None = None


def line(x, y, fmt: str = "", yerr=None, **style) -> Line:
    return Line(x, y, fmt, style, yerr)


def epoch_lines(train_steps, train_values, test_steps, test_values, per_epoch: int, color: str,
                train_label: str, test_label: str) -> list[Line]:  # fmt: skip
    """A training curve against epochs: the per-batch values as a moving average (a 40th of
    the run), and the test value after each epoch as markers, in one colour."""
    window = max(1, len(train_values) // 40)
    return [line(np.asarray(train_steps) / per_epoch, moving_average(train_values, window), color=color, linewidth=1.1,
                 label=train_label),
            line(np.asarray(test_steps) / per_epoch, test_values, "o--", color=color, markersize=3, linewidth=0.8,
                 label=test_label)]  # fmt: skip


@dataclass(frozen=True)
class Panel:
    """One axes of ``line_panels``: its lines, labels and scales."""

    lines: Sequence[Line]
    xlabel: str = ""
    ylabel: str = ""
    title: str = ""
    xscale: str = ""  # "log" for a log axis
    yscale: str = ""
    xticks: tuple[Sequence[float], Sequence[str]] | None = None
    legend: dict | None = None  # legend keywords (fontsize, ncol); None: no legend


def line_panels(panels: Sequence[Panel], size: tuple[float, float], sharey: bool = False) -> Figure:
    """Side-by-side line plots (training curves, accuracy against a setting), a light grid on each."""
    fig, axes = plt.subplots(1, len(panels), figsize=size, sharey=sharey, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for series in panel.lines:
            if series.yerr is not None:
                ax.errorbar(series.x, series.y, yerr=series.yerr, fmt=series.fmt, **series.style)
            elif series.fmt:
                ax.plot(series.x, series.y, series.fmt, **series.style)
            else:
                ax.plot(series.x, series.y, **series.style)
        if panel.xscale:
            ax.set_xscale(panel.xscale)
        if panel.yscale:
            ax.set_yscale(panel.yscale)
        if panel.xticks is not None:
            ax.set_xticks(*panel.xticks)
        if panel.title:
            ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.legend is not None:
            ax.legend(**panel.legend)
    fig.tight_layout()
    return fig


def bar_chart(labels: Sequence[str], means: Sequence[float], stds: Sequence[float], colors: Sequence[str],
              ylabel: str, size: tuple[float, float], top: float = 105) -> Figure:  # fmt: skip
    """Bars with error bars, each bar's value printed above it (one decimal)."""
    fig, ax = plt.subplots(figsize=size)
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, capsize=3, color=colors)
    for xi, mean in zip(x, means, strict=True):
        ax.text(xi, mean + 1, f"{mean:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def flow_diagram(boxes: Mapping[str, tuple[float, float, str]], arrows: Sequence[tuple[str, str, str]],
                 size: tuple[float, float]) -> Figure:  # fmt: skip
    """A method drawn from its parts: labelled boxes at ``(x, y)`` in the unit square, joined by
    arrows ``(from, to, label)``; a label is written beside the middle of its arrow."""
    fig, ax = plt.subplots(figsize=size)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.axis("off")
    for x, y, text in boxes.values():
        ax.text(x, y, text, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "#eef1f8", "edgecolor": "#3949ab", "linewidth": 0.8})  # fmt: skip
    for start, end, label in arrows:
        (x0, y0, _), (x1, y1, _) = boxes[start], boxes[end]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "linewidth": 0.8, "color": "#333333", "shrinkA": 14, "shrinkB": 26})  # fmt: skip
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.07, label, ha="center", va="bottom", fontsize=7, color="#333333")
    fig.tight_layout(pad=0.1)
    return fig

"""Figure makers: each takes plain arrays and returns a matplotlib ``Figure``.

``to_data_uri`` turns a figure into an inline image for the HTML: SVG for line plots
(crisp at any zoom), PNG for scatter plots of thousands of points (small and fast to
render).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

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


def scatter_by_class(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    class_names: Sequence[str],
) -> Figure:
    """Side-by-side 2-D scatter plots (one per ``(title, points)``), coloured by class, one shared legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH_IN, 0.8 * WIDTH_IN / len(panels) + 0.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, points) in zip(axes[0], panels, strict=True):
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
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(5, len(class_names)),
        markerscale=5,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig

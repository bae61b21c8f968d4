"""The README's picture: a report's first page beside the run table it was built from.

    python scripts/readme-picture.py --pdf reports/vicreg.pdf --runs runs --out docs/img/report-and-runs.png

The page is rendered with poppler's ``pdftoppm``; the table is what ``lfr runs`` prints for
the report's experiments, from the same store. Nothing in the picture is typed by hand.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt


def page_image(pdf: Path, folder: Path) -> Path:
    subprocess.run(["pdftoppm", "-png", "-r", "90", "-f", "1", "-l", "1", str(pdf), str(folder / "page")], check=True)
    return next(folder.glob("page*.png"))


def run_table(runs: Path, experiments: list[str]) -> str:
    """``lfr runs --experiment E`` for each experiment, as one table (one header, no footers)."""
    env = {**os.environ, "LFR_RUNS_DIR": str(runs)}
    env.pop("LFR_MONGO_URL", None)
    header, rows = "", []
    for experiment in experiments:
        out = subprocess.run([sys.executable, "-m", "lfr_report", "runs", "--experiment", experiment], env=env,
                             capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
        header, rows = out[0], rows + out[1:-1]  # the last line says how many runs, and where
    return "\n".join([f"$ lfr runs --experiment E    (E: {', '.join(experiments)})", header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf", type=Path, required=True, help="the report whose first page is shown")
    parser.add_argument("--runs", type=Path, required=True, help="the file store the report was built from")
    parser.add_argument("--experiments", default="vicreg,eigenmaps,downstream", help="whose runs the table lists")
    parser.add_argument("--out", type=Path, default=Path("docs/img/report-and-runs.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page = mpimg.imread(page_image(args.pdf, Path(tmp)))
    table = run_table(args.runs, args.experiments.split(","))
    fig = plt.figure(figsize=(13, 6.2), dpi=100)
    left = fig.add_axes((0.0, 0.0, 0.36, 1.0))
    left.imshow(page)
    left.axis("off")
    right = fig.add_axes((0.37, 0.0, 0.63, 1.0))
    right.axis("off")
    right.text(0.0, 0.9, table, family="monospace", fontsize=6.7, va="top", ha="left")
    right.text(
        0.0,
        0.62,
        "Each table row and figure caption in the report names its run (the Run column);\n`lfr runs show ID` prints that run's config, machine, commit and metrics.",
        fontsize=9,
        va="top",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

"""The benchmark script runs end to end on tiny data and reports what it promises."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_vicreg


def test_benchmark_runs_both_pipelines_and_the_downstream_passes(tmp_path, capsys):
    out = tmp_path / "results.json"
    bench_vicreg.main(["--data", "synthetic", "--train-size", "256", "--batch-size", "64", "--steps", "2",
                       "--warmup", "1", "--ref-workers", "0", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "lfr / best reference (reference, 0 workers):" in printed
    results = json.loads(out.read_text())
    pipelines = [row["pipeline"] for row in results["rows"]]
    assert pipelines == ["lfr", "lfr, float32, default layout", "reference, 0 workers"]
    for row in results["rows"]:  # throughput is the batch over the measured step time, and a tiny net is not slow
        assert row["images_per_s"] == pytest.approx(64 / (row["ms_per_step"] / 1e3)) and row["images_per_s"] > 20
        assert row["peak_memory_mb"] > 0
    assert 0 < results["rows"][0]["augment_share"] < 1
    assert results["ratio_vs_best_reference"] == pytest.approx(
        results["rows"][0]["images_per_s"] / results["rows"][2]["images_per_s"]
    )
    downstream = results["downstream"]
    assert downstream["knn_max_score_difference"] < 1e-3  # faiss and scikit-learn find the same neighbours
    assert downstream["linear_probe_s"] > 0


def test_profile_prints_the_operator_table(capsys):
    bench_vicreg.main(["--data", "synthetic", "--train-size", "128", "--batch-size", "64", "--warmup", "1",
                       "--profile", "1"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Self CPU" in printed and "aten::" in printed

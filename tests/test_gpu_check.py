"""scripts/gpu-check.py in its tiny CPU form: the same sections as on a GPU, at sizes that run
in a test, and one JSON with every figure the GPU run will give."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from lfr_report.data import load_dataset

REPO = Path(__file__).resolve().parents[1]


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu-check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny CPU run of the whole check; the rehearsal hook runs a command that reads the
    prepared CIFAR-10 with the package's reader (the rehearsal reports have their own tests)."""
    out = tmp_path_factory.mktemp("gpu-check") / "gpu-check.json"
    probe = (
        "{python} -c \"from lfr_report.data import load_dataset; print('cifar10 train', len(load_dataset('cifar10')))\""
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LFR_DATA_DIR", str(out.parent / "no-data"))
        code = gpu_check().main(["--device", "cpu", "--out", str(out), "--work", str(out.parent / "work"),
                                  "--rehearsal-command", probe])  # fmt: skip
    return {"code": code, **json.loads(out.read_text())}


def test_every_section_runs_and_is_recorded(tiny):
    assert tiny["code"] == 0, {name: s.get("error") for name, s in tiny["sections"].items()}
    assert {name: s["status"] for name, s in tiny["sections"].items()} == dict.fromkeys(
        ("bench", "vicreg_full", "rehearsal"), "ok"
    )
    assert tiny["mode"] == "tiny cpu" and tiny["compile_disabled"] and tiny["device"].startswith("cpu")
    assert tiny["data"]["cifar10"].startswith("stand-in") and tiny["data"]["mnist"].startswith("stand-in")


def test_bench_compares_with_the_reference(tiny):
    bench = tiny["sections"]["bench"]["result"]
    rows = {row["pipeline"]: row for row in bench["rows"]}
    assert {"lfr", "lfr, float32, default layout", "reference, 0 workers"} <= set(rows)
    batch = bench["header"]["batch_size"]
    for row in rows.values():  # images a second from the measured step time; memory measured
        assert row["images_per_s"] == pytest.approx(batch / (row["ms_per_step"] / 1e3)) and row["peak_memory_mb"] > 0
    best_reference = max(row["images_per_s"] for name, row in rows.items() if name.startswith("reference"))
    assert bench["ratio_vs_best_reference"] == pytest.approx(rows["lfr"]["images_per_s"] / best_reference)
    assert bench["header"]["data"].startswith("synthetic")


def test_the_vicreg_stretch_is_the_full_config_with_sizes_shrunk(tiny):
    stretch = tiny["sections"]["vicreg_full"]["result"]
    runs = stretch["runs"]
    assert set(runs) == {"bf16", "float32", "bf16_compile"}
    for run in runs.values():
        assert run["config"]["encoder"] == "convnet" and run["config"]["channels_last"]  # tiny: the small net
        assert "cifar-10-batches-py" in run["data"] and run["full_epochs"] == 30
        assert run["steps"] == 4 and len(run["train_loss"]) == 4
        assert run["seconds_per_epoch_cifar10"] == pytest.approx(50_000 / run["images_per_s"])  # CIFAR-10's train split
        assert run["seconds_full_run"] == pytest.approx(30 * run["seconds_per_epoch_cifar10"])
    assert stretch["speedup_bf16_vs_float32"] == pytest.approx(
        runs["bf16"]["images_per_s"] / runs["float32"]["images_per_s"]
    )
    assert runs["bf16_compile"]["config"]["compile"] and not runs["float32"]["config"]["amp"]
    # on a CPU autocast is off, so the three runs are the same computation from the same seed
    assert stretch["loss_relative_difference_bf16_vs_float32"]["max"] == pytest.approx(0, abs=1e-6)
    assert np.allclose(runs["bf16"]["train_loss"], runs["bf16_compile"]["train_loss"])


def test_the_rehearsal_hook_sees_the_prepared_data(tiny):
    rehearsal = tiny["sections"]["rehearsal"]["result"]
    assert rehearsal["returncode"] == 0 and "cifar10 train 160" in rehearsal["stdout_tail"]


def test_a_failing_section_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LFR_DATA_DIR", str(tmp_path / "none"))
    out = tmp_path / "check.json"
    code = gpu_check().main(["--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work"), "--skip", "bench",
                             "--skip", "vicreg_full",
                             "--rehearsal-command", "{python} -c 'raise SystemExit(3)'"])  # fmt: skip
    result = json.loads(out.read_text())
    assert code == 1 and result["sections"]["bench"] == {"status": "skipped", "why": "--skip"}
    assert (
        result["sections"]["rehearsal"]["status"] == "failed"
        and '"returncode": 3' in result["sections"]["rehearsal"]["error"]
    )


def test_the_machines_own_cifar10_is_used_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("LFR_DATA_DIR", str(tmp_path / "real"))
    module = gpu_check()
    sizes = {**module.SIZES["cpu"], "cifar_train": 10, "cifar_test": 5}
    module.prepare_data(tmp_path / "real", sizes, seed=1)  # stands in for a machine that has both
    found = module.prepare_data(tmp_path / "run", sizes)
    assert found["cifar10"].startswith("the machine's") and found["mnist"].startswith("the machine's")
    assert (load_dataset("cifar10", "test", tmp_path / "run").images == load_dataset("cifar10", "test", tmp_path / "real").images).all()  # fmt: skip

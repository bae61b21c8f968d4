#!/usr/bin/env python
"""The GPU check: what a GPU machine has to show before anyone trusts `--scale full` on it,
measured in one go (under 8 minutes on one GPU) and written to one JSON file.

    python scripts/gpu-check.py                           # CUDA: benchmarks/out/gpu-check.json
    python scripts/gpu-check.py --device cpu              # the same steps at tiny sizes (seconds; the test)
    python scripts/gpu-check.py --rehearsal-command "lfr report vicreg --scale full --rehearse"
    make gpu-check                                        # the first, from the Makefile

Its three sections, each timed and recorded even when another fails:

* ``bench``: ``benchmarks/bench_vicreg.py`` on CIFAR-10's shapes with the CIFAR-stem
  ResNet-18: images/s of lfr's pipeline (bf16, channels_last; float32; torch.compile)
  against the reference (lightly's transforms in a DataLoader), peak memory, the linear
  probe's and the kNN search's times.
* ``vicreg_full``: a stretch of ``experiments/vicreg.py with full`` itself (Sacred's run,
  the CIFAR-10 reader, ``fit``, the probe, t-SNE), on CIFAR-10-format files: images/s
  between the first and the last metric flush (the flush copies the losses to the host,
  so the GPU has caught up at each), the seconds an epoch of CIFAR-10 and the whole
  ``full`` run would take at that rate, peak memory; run three times from the same seed
  and batches: bf16 autocast, float32 and bf16 + ``compile=True``, to compare their losses
  step by step and their speed.
* ``rehearsal``: the rehearsal reports at ``full`` shapes (``REHEARSAL_COMMAND``, or
  ``--rehearsal-command``): every report built from ``full``-configuration runs with only
  their sizes shrunk, the runs on this machine's device, PDFs under the output folder.

CIFAR-10 and MNIST are the machine's own when ``$LFR_DATA_DIR`` has them; otherwise
stand-ins in their real on-disk formats (random pixels: throughput and shapes do not
depend on them, accuracies mean nothing) are written first, and the JSON says which.
``--device cpu`` shrinks every size, the network too (the small ConvNet for the ResNet-18,
whose 6 steps alone take minutes on 2 cores), and runs torch.compile with dynamo disabled
(compiling C++ on a CPU takes minutes), so that the same code runs in a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sacred.observers import RunObserver  # noqa: E402

from lfr_report.data import DATASETS, data_dir, formats, load_dataset  # noqa: E402
from lfr_report.errors import DataError  # noqa: E402
from lfr_report.report.runner import expected_config, load_experiment  # noqa: E402
from lfr_report.tracking.context import describe_device, resolve_device  # noqa: E402

# The hook for the rehearsal (issue 16, section 1): every report at `full` with sizes shrunk.
REHEARSAL_COMMAND = "{python} -m lfr_report report all --scale full --rehearse --out {out}/reports"

# Sizes per device: the GPU's are the real shapes, the CPU's the smallest that run the same code.
SIZES = {
    "cuda": {
        "bench": ["--data", "synthetic_cifar10", "--encoder", "resnet18", "--compile"],
        "cifar_train": 50_000, "cifar_test": 10_000, "mnist": (60_000, 10_000),
        "steps": 120, "log_every": 20, "test_size": 2_560, "tsne_points": 1_000, "updates": {},
        "budget_s": 470,
    },
    "cpu": {
        "bench": ["--data", "synthetic", "--train-size", "128", "--batch-size", "16", "--steps", "2", "--warmup", "1",
                  "--ref-workers", "0", "--compile"],
        "cifar_train": 160, "cifar_test": 64, "mnist": (64, 32),
        "steps": 6, "log_every": 2, "test_size": 64, "tsne_points": 40,
        "updates": {"batch_size": 16, "encoder": "convnet", "widths": [8, 16], "encoder_dim": 16, "projector_dim": 32,
                    "probe": {"epochs": 2, "batch_size": 32}},
        "budget_s": 600,
    },
}  # fmt: skip
CIFAR10_TRAIN = 50_000  # images in CIFAR-10's training set, for the extrapolation


class MetricTimes(RunObserver):
    """Every metric a Sacred run logs, with the timestamp Sacred gave each value."""

    def __init__(self) -> None:
        self.metrics: dict[str, dict[str, list]] = {}

    def log_metrics(self, metrics_by_name, info) -> None:
        for name, metric in metrics_by_name.items():
            kept = self.metrics.setdefault(name, {"steps": [], "values": [], "timestamps": []})
            for key in kept:
                kept[key].extend(metric[key])


# ---------------------------------------------------------------- data


def prepare_data(root: Path, sizes: dict, seed: int = 0) -> dict[str, str]:
    """A data folder for the runs: links to everything in ``$LFR_DATA_DIR``, and stand-ins
    in the real formats for CIFAR-10 and MNIST where that has none. Returns what each is."""
    root.mkdir(parents=True, exist_ok=True)
    real = data_dir()
    if real.is_dir():
        for entry in real.iterdir():
            if not (root / entry.name).exists():
                (root / entry.name).symlink_to(entry.resolve())
    rng = np.random.default_rng(seed)
    found = {}
    for name in ("cifar10", "mnist"):
        try:
            found[name] = f"the machine's: {load_dataset(name, 'test', root).source}"
            continue
        except DataError:
            pass
        if name == "cifar10":
            shape, (n_train, n_test) = (3, 32, 32), (sizes["cifar_train"], sizes["cifar_test"])
        else:
            shape, (n_train, n_test) = (28, 28), sizes["mnist"]
        train = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8), np.arange(n_train) % 10
        test = rng.integers(0, 256, (n_test, *shape), dtype=np.uint8), np.arange(n_test) % 10
        if name == "cifar10":
            formats.write_cifar10(root, train, test, list(DATASETS["cifar10"].classes))
        else:
            for prefix, (images, labels) in (("train", train), ("t10k", test)):
                formats.write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", images)
                formats.write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
        found[name] = f"stand-in: {n_train} + {n_test} random images in the real format"
    return found


# ---------------------------------------------------------------- the sections


def bench(device: torch.device, sizes: dict, work: Path) -> dict:
    """``make bench`` on this device at CIFAR-10's shapes; the benchmark's own JSON."""
    spec = importlib.util.spec_from_file_location("bench_vicreg", ROOT / "benchmarks" / "bench_vicreg.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    out = work / "bench.json"
    module.main(["--device", device.type, *sizes["bench"], "--json", str(out)])
    return json.loads(out.read_text())


def vicreg_stretch(device: torch.device, sizes: dict) -> dict:
    """``vicreg.py with full`` for a few hundred steps, three ways from the same seed."""
    ex = load_experiment("vicreg")
    full = expected_config(ex, ["full"])
    batch = sizes["updates"].get("batch_size", full["batch_size"])
    updates = {
        **sizes["updates"], "device": device.type, "seed": 0, "epochs": 1, "log_every": sizes["log_every"],
        "tsne_points": sizes["tsne_points"], "data": {"train_size": sizes["steps"] * batch, "test_size": sizes["test_size"]},
    }  # fmt: skip
    variants = {"bf16": {"amp": True}, "float32": {"amp": False}, "bf16_compile": {"amp": True, "compile": True}}
    runs = {}
    for label, variant in variants.items():
        times = MetricTimes()
        ex.observers.append(times)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        try:
            run = ex.run(config_updates={**updates, **variant}, named_configs=["full"])
        finally:
            ex.observers.remove(times)
        loss = times.metrics["train_loss"]
        first, last = sizes["log_every"] - 1, len(loss["values"]) - 1  # the first flush ends warm-up
        seconds = (loss["timestamps"][last] - loss["timestamps"][first]).total_seconds()
        images_per_s = (last - first) * batch / seconds
        epoch_s = (CIFAR10_TRAIN // batch) * batch / images_per_s
        runs[label] = {
            "config": {key: run.config[key] for key in ("encoder", "batch_size", "amp", "compile", "channels_last")},
            "data": run.info.get("data_source"), "steps": len(loss["values"]), "wall_s": time.perf_counter() - started,
            "images_per_s": images_per_s, "seconds_per_epoch_cifar10": epoch_s,
            "seconds_full_run": epoch_s * full["epochs"], "full_epochs": full["epochs"],
            "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "probe_test_accuracy": run.result["probe_test_accuracy"], "train_loss": loss["values"],
        }  # fmt: skip

    def agreement(a: str, b: str) -> dict:
        x, y = np.array(runs[a]["train_loss"]), np.array(runs[b]["train_loss"])
        relative = np.abs(x - y) / np.abs(y)
        return {"first_step": float(relative[0]), "median": float(np.median(relative)), "max": float(relative.max()),
                "last_step": float(relative[-1])}  # fmt: skip

    return {
        "runs": runs,
        "loss_relative_difference_bf16_vs_float32": agreement("bf16", "float32"),
        "loss_relative_difference_compile_vs_eager": agreement("bf16_compile", "bf16"),
        "speedup_bf16_vs_float32": runs["bf16"]["images_per_s"] / runs["float32"]["images_per_s"],
        "speedup_compile": runs["bf16_compile"]["images_per_s"] / runs["bf16"]["images_per_s"],
        "compile_overhead_s": runs["bf16_compile"]["wall_s"] - runs["bf16"]["wall_s"],
        "note": "amp is CUDA-only: on a CPU bf16 and float32 are the same run" if device.type != "cuda" else "",
    }


def rehearsal(command: str, work: Path, data: Path, timeout_s: float) -> dict:
    """The rehearsal reports, as a command line run with the prepared data and fresh runs."""
    argv = shlex.split(command.format(python=sys.executable, out=work))
    env = {**os.environ, "LFR_DATA_DIR": str(data), "LFR_RUNS_DIR": str(work / "runs"),
           "LFR_CHECKPOINT_DIR": str(work / "checkpoints")}  # fmt: skip
    env.pop("LFR_MONGO_URL", None)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"`{' '.join(argv)}` ran past the time left ({timeout_s:.0f} s)") from exc
    written = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("report written: ")]
    result = {"command": argv, "returncode": done.returncode, "stdout_tail": done.stdout[-2000:],
              "stderr_tail": done.stderr[-2000:], "reports": {p: Path(p).stat().st_size for p in written}}  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(json.dumps(result))
    return result


# ---------------------------------------------------------------- main


def section(results: dict, name: str, out: Path, run: Callable[[], dict]) -> None:
    """Run one section; record its result or its error and its time; write the JSON so far."""
    started = time.perf_counter()
    try:
        results["sections"][name] = {"status": "ok", "result": run()}
    except Exception as exc:  # a failed section is a finding, not the end of the check
        results["sections"][name] = {"status": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
    results["sections"][name]["seconds"] = time.perf_counter() - started
    write(results, out)


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)  # fmt: skip
    parser.add_argument("--device", default="cuda", help="cuda (the check) | cpu (tiny sizes, for tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gpu-check.json")
    parser.add_argument("--rehearsal-command", default=REHEARSAL_COMMAND,
                        help="the rehearsal's command line; {python} and {out} (the work folder) are filled in "
                             "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--skip", action="append", default=[], choices=("bench", "vicreg_full", "rehearsal"))
    parser.add_argument("--budget-s", type=float, default=None, help="skip what would start after this many seconds")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    sizes = SIZES[device.type]
    budget = args.budget_s or sizes["budget_s"]
    if device.type == "cpu":
        torch._dynamo.config.disable = True  # torch.compile returns the model as it is: no minutes of C++
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lfr-gpu-check-"))
    os.environ.update(LFR_CHECKPOINT_DIR=str(work / "checkpoints"))
    os.environ.pop("LFR_MONGO_URL", None)
    results: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "device": describe_device(device),
        "torch": torch.__version__, "cuda": torch.version.cuda, "mode": "gpu" if device.type == "cuda" else "tiny cpu",
        "compile_disabled": device.type == "cpu", "work": str(work), "sections": {},
    }  # fmt: skip
    data = work / "data"
    results["data"] = prepare_data(data, sizes)
    os.environ["LFR_DATA_DIR"] = str(data)

    plan = {
        "bench": lambda: bench(device, sizes, work),
        "vicreg_full": lambda: vicreg_stretch(device, sizes),
        "rehearsal": lambda: rehearsal(args.rehearsal_command, work, data, budget - (time.perf_counter() - started)),
    }
    for name, run in plan.items():
        if name in args.skip:
            results["sections"][name] = {"status": "skipped", "why": "--skip"}
        elif time.perf_counter() - started > budget:
            results["sections"][name] = {"status": "skipped", "why": f"past the {budget:.0f} s budget"}
        else:
            section(results, name, args.out, run)
    results["total_s"] = time.perf_counter() - started
    write(results, args.out)
    statuses = {name: s["status"] for name, s in results["sections"].items()}
    print(f"gpu check: {statuses}, {results['total_s']:.0f} s; results in {args.out}")
    return 0 if all(status != "failed" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

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
* ``vicreg_full``: a stretch of the training of ``experiments/vicreg.py with full`` (its
  config from Sacred, the CIFAR-10 reader on CIFAR-10-format files, ``fit``): images/s
  between the first and the last metric flush (a flush copies the losses to the host, so
  the GPU has caught up at each), the seconds an epoch of CIFAR-10 and the whole ``full``
  run would take at that rate, peak memory; three times from the same seed and batches:
  bf16 autocast, float32 and bf16 + ``compile=True``, to compare their losses step by
  step and their speed.
* ``rehearsal``: the rehearsal reports at ``full`` shapes (``REHEARSAL_COMMAND``, or
  ``--rehearsal-command``): every report built from ``full``-configuration runs with only
  their sizes shrunk, the runs on this machine's device, PDFs under the output folder.

CIFAR-10 and MNIST are the machine's own when ``$LFR_DATA_DIR`` has them; otherwise
stand-ins in their real on-disk formats (random pixels: throughput and shapes do not
depend on them, accuracies mean nothing) are written first, and the JSON says which.
``--device cpu`` shrinks every size (the benchmark without its compile row and downstream
passes, which tests/test_bench.py covers), the network too (the small ConvNet for the ResNet-18,
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
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lfr_report.data import DATASETS, data_dir, formats, load_dataset  # noqa: E402
from lfr_report.errors import DataError  # noqa: E402
from lfr_report.ingredients import build_augment  # noqa: E402
from lfr_report.models import Projector, build_encoder, encoder_arch  # noqa: E402
from lfr_report.running.runner import expected_config, load_experiment  # noqa: E402
from lfr_report.ssl import VICRegLoss  # noqa: E402
from lfr_report.ssl.train import fit, on_device_if_fits  # noqa: E402
from lfr_report.ssl.views import augmented_pair  # noqa: E402
from lfr_report.tracking.context import describe_device, resolve_device, seed_everything  # noqa: E402

# The hook for the rehearsal (issue 16, section 1): every report at `full` with sizes shrunk.
REHEARSAL_COMMAND = "{python} -m lfr_report report all --scale full --rehearse --out {out}/reports"

# Sizes per device: the GPU's are the real shapes, the CPU's the smallest that run the same code.
SIZES = {
    "cuda": {
        "bench": ["--data", "synthetic_cifar10", "--encoder", "resnet18", "--compile"],
        "cifar_train": 50_000, "cifar_test": 10_000, "mnist": (60_000, 10_000),
        "steps": 120, "log_every": 20, "test_size": 2_560, "updates": {},
        "budget_s": 470,
    },
    "cpu": {
        # bench's compile row and downstream passes are left out: tests/test_bench.py runs them
        "bench": ["--data", "synthetic", "--train-size", "64", "--batch-size", "16", "--steps", "1", "--warmup", "1",
                  "--ref-workers", "0", "--skip-downstream"],
        "cifar_train": 160, "cifar_test": 64, "mnist": (64, 32),
        "steps": 4, "log_every": 2, "test_size": 32,
        "updates": {"batch_size": 16, "encoder": "convnet", "widths": [8, 16], "encoder_dim": 16, "projector_dim": 32,
                    "probe": {"epochs": 2, "batch_size": 32}},
        "budget_s": 600,
    },
}  # fmt: skip
CIFAR10_TRAIN = 50_000  # images in CIFAR-10's training set, for the extrapolation


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


def train_stretch(c: dict, device: torch.device, full_epochs: int) -> dict:
    """One stretch: ``fit`` on config ``c`` as ``vicreg.py``'s ``main`` sets it up, timed between flushes."""
    train = load_dataset(c["data"]["name"], "train").subset(c["data"]["train_size"], c["seed"])
    test = load_dataset(c["data"]["name"], "test").subset(c["data"]["test_size"], c["seed"])
    seed_everything(c["seed"])
    arch = encoder_arch(c["encoder"], train.spec.channels, c["encoder_dim"], train.spec.shape[-1], c["widths"], c["pool"])  # fmt: skip
    layout = torch.channels_last if c["channels_last"] else torch.contiguous_format
    f = build_encoder(**arch).to(device, memory_format=layout)
    h = Projector(c["encoder_dim"], c["projector_dim"]).to(device)
    optimizer = torch.optim.Adam([*f.parameters(), *h.parameters()], lr=c["lr"], betas=tuple(c["betas"]),
                                 weight_decay=c["weight_decay"])  # fmt: skip
    views = augmented_pair(build_augment(train.spec, **c["augment"]), c["channels_last"])
    losses, flushed_at = [], {}  # train_loss per step; the clock when each flush reached the host

    def log(name: str, value: float, step: int) -> None:
        if name == "train_loss":
            losses.append(value)
            flushed_at[step] = time.perf_counter()

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as begin_run sets it for every experiment on CUDA
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    fit(encoder=f, projector=h, objective=VICRegLoss(c["lambda_"], c["mu"], c["nu"], c["gamma"], c["eps"]),
        make_views=views, train_images=on_device_if_fits(train.images, device),
        test_images=on_device_if_fits(test.images, device), optimizer=optimizer, epochs=c["epochs"],
        batch_size=c["batch_size"], device=device, log=log, amp=c["amp"], compile=c["compile"],
        generator=torch.Generator(device=device).manual_seed(c["seed"]), log_every=c["log_every"],
        progress=False)  # fmt: skip
    first, last = c["log_every"] - 1, len(losses) - 1  # the first flush ends the warm-up (and compiling)
    batch = c["batch_size"]
    images_per_s = (last - first) * batch / (flushed_at[last] - flushed_at[first])
    epoch_s = (CIFAR10_TRAIN // batch) * batch / images_per_s
    return {
        "config": {key: c[key] for key in ("encoder", "batch_size", "amp", "compile", "channels_last", "lr")},
        "data": train.source, "steps": len(losses), "wall_s": time.perf_counter() - started,
        "images_per_s": images_per_s, "seconds_per_epoch_cifar10": epoch_s,
        "seconds_full_run": epoch_s * full_epochs, "full_epochs": full_epochs,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "train_loss": losses,
    }  # fmt: skip


def vicreg_stretch(device: torch.device, sizes: dict) -> dict:
    """The training of ``vicreg.py with full`` for a stretch of steps, three ways from one seed.

    The config is the experiment's own (Sacred computes ``with full`` and the shrunk sizes);
    data, networks, optimiser, objective and ``fit`` are built as the experiment's ``main``
    builds them. The probes and t-SNE after training are left out here (a 3072-d whitening
    and a t-SNE would dominate the time); the rehearsal section runs the whole experiment.
    """
    ex = load_experiment("vicreg")
    full = expected_config(ex, ["full"])
    batch = sizes["updates"].get("batch_size", full["batch_size"])
    updates = {**sizes["updates"], "device": device.type, "seed": 0, "epochs": 1, "log_every": sizes["log_every"],
               "data": {"train_size": sizes["steps"] * batch, "test_size": sizes["test_size"]}}  # fmt: skip
    variants = {"bf16": {"amp": True}, "float32": {"amp": False}, "bf16_compile": {"amp": True, "compile": True}}
    runs = {label: train_stretch(expected_config(ex, ["full"], {**updates, **variant}), device, full["epochs"])
            for label, variant in variants.items()}  # fmt: skip

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
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout_s, 1))
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
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the data, runs and reports it makes (default: a new temporary folder)",
    )
    parser.add_argument("--budget-s", type=float, default=None, help="skip what would start after this many seconds")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    # The check points the data, checkpoints and store at its own folder, and on a CPU makes
    # torch.compile return the model as it is (no minutes of C++); both are undone after it.
    with mock.patch.dict(os.environ), torch._dynamo.config.patch(disable=device.type == "cpu"):
        return check(args, device)


def check(args: argparse.Namespace, device: torch.device) -> int:
    """Every section in turn, within the time budget; 1 if any failed."""
    sizes = SIZES[device.type]
    budget = args.budget_s or sizes["budget_s"]
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="lfr-gpu-check-"))
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

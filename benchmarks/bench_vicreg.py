"""Time a VICReg training step, this project's pipeline beside the reference one.

    make bench                                            # CPU, Fashion-MNIST, batch 256
    python benchmarks/bench_vicreg.py --steps 10          # quicker, noisier
    python benchmarks/bench_vicreg.py --device cuda --data synthetic_cifar10 --encoder resnet18 --compile
    python benchmarks/bench_vicreg.py --profile 10        # where this project's step spends its time

A step is everything between two optimiser updates: two augmented views of a batch,
two forward passes, the loss, the backward pass, the Adam step. Both pipelines train
the same backbone (``build_encoder``) and projector at the same batch size; they
differ in what a user of each gets:

* **lfr**: the batch is sliced from a uint8 tensor already on the training device;
  ``Augment`` makes each view with batched tensor operations (per-image parameters);
  channels_last, and on CUDA bf16 autocast (the ``vicreg`` experiment's defaults);
  ``lfr_report.ssl.vicreg_loss``.
* **reference**: what a user of the ``lightly`` package writes: a map-style dataset of
  PIL images, ``lightly.transforms.VICRegTransform`` (per-image torchvision transforms,
  given the same recipe: crop scale, flip, jitter, blur, solarize, normalisation) in a
  ``DataLoader`` (``--ref-workers`` worker processes), float32 in the default memory
  layout, ``lightly.loss.VICRegLoss``.

The ratio compares lfr with the fastest reference row. Then, on the same features (the
lfr encoder after its timed steps, applied to the train and test sets), one linear
probe and one k=2 nearest-neighbour anomaly-score pass (faiss against scikit-learn's
``NearestNeighbors``) are timed. Peak memory is the peak resident set of this process
(reset before each row through /proc/self/clear_refs) plus the largest DataLoader
worker's, or on CUDA the peak of torch's allocator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lfr_report.data import Augment, AugmentParams, get_spec, load_dataset
from lfr_report.evaluate import encode, linear_probe
from lfr_report.models import Projector, build_encoder
from lfr_report.neighbours import inverse_density_score
from lfr_report.ssl import VICRegLoss
from lfr_report.ssl.train import train_step
from lfr_report.ssl.views import augmented_pair
from lfr_report.tracking.context import describe_device, resolve_device

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass
class Row:
    pipeline: str
    images_per_s: float  # training images per second (each seen as two views)
    ms_per_step: float
    peak_memory_mb: float
    augment_share: float | None = None  # fraction of the step spent making the two views (lfr rows)
    note: str = ""


# ---------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):  # "5" resets VmHWM, the peak resident set, to the current one (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")


def _vm_hwm_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_memory_mb(device: torch.device) -> float:
    """Peak of torch's CUDA allocator, or the peak resident set of this process and its largest child."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    workers = [_vm_hwm_mb(child.pid) for child in multiprocessing.active_children()]
    return _vm_hwm_mb() + max(workers, default=0.0)


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(step: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step``: the median of ``steps`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---------------------------------------------------------------- data and models


def load_images(name: str, size: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple, tuple]:
    """Train and test images (uint8) and labels, and the per-channel mean and std.

    ``synthetic_cifar10`` is random data of CIFAR-10's shapes (50,000 + 10,000 RGB
    32x32 images): throughput does not depend on the pixels.
    """
    if name == "synthetic_cifar10":
        g = torch.Generator().manual_seed(0)
        train = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        test = torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (60_000,), generator=g)
        train, train_y, test_y = train[:size] if size else train, labels[:50_000], labels[50_000:]
        return train, train_y[: len(train)], test, test_y, CIFAR_MEAN, CIFAR_STD
    spec = get_spec(name)
    train, test = load_dataset(name, "train").subset(size), load_dataset(name, "test")
    return train.images, train.labels, test.images, test.labels, spec.mean, spec.std


def build_model(encoder: str, images: Tensor, device: torch.device, channels_last: bool):
    channels, side = images.shape[1], images.shape[-1]
    f = build_encoder(encoder, channels, 128, side)
    h = Projector(128, 512)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    f, h = f.to(device, memory_format=layout), h.to(device)
    optimizer = torch.optim.Adam([*f.parameters(), *h.parameters()], lr=3e-4, weight_decay=1e-6)
    return f, h, optimizer


# ---------------------------------------------------------------- the two pipelines


def bench_lfr(images: Tensor, params: AugmentParams, mean, std, args, device, *, amp: bool, compile: bool,
              channels_last: bool, label: str) -> tuple[Row, torch.nn.Module]:  # fmt: skip
    torch.manual_seed(0)
    reset_peak_memory(device)
    data = images.to(device)  # the experiment keeps the data set on the device when it fits
    make_views = augmented_pair(Augment(params, mean, std), channels_last)
    f, h, optimizer = build_model(args.encoder, images, device, channels_last)
    train_f, train_h = (torch.compile(f), torch.compile(h)) if compile else (f, h)
    objective = VICRegLoss()
    generator = torch.Generator(device=device).manual_seed(0)
    batches = batch_indices(len(data), args.batch_size, generator)

    def views() -> tuple[Tensor, Tensor]:
        index = next(batches)
        return make_views(data[index], index, generator)

    def step() -> None:
        view_a, view_b = views()
        train_step(train_f, train_h, objective, optimizer, view_a, view_b, amp)

    warmup = args.warmup + (10 if compile else 0)  # compilation happens in the first calls
    seconds = timed(step, args.steps, warmup, device)
    if device.type == "cuda":  # prove the inner loop never waits for the GPU: any sync raises here
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    peak = peak_memory_mb(device)
    augment_seconds = timed(views, args.steps, 1, device)
    row = Row(label, args.batch_size / seconds, seconds * 1e3, peak, augment_seconds / seconds)
    return row, f


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    while True:
        order = torch.randperm(n, generator=generator, device=generator.device)
        for i in range(n // batch_size):
            yield order[i * batch_size : (i + 1) * batch_size]


class PILImages(torch.utils.data.Dataset):
    """A map-style data set of PIL images, as torchvision's data sets hand them to transforms."""

    def __init__(self, images: Tensor, transform) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        image = self.images[i]
        return self.transform(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image))


def reference_transform(params: AugmentParams, side: int, channels: int, mean, std):
    """lightly's VICReg transform set to the same recipe as ``params``."""
    from lightly.transforms import VICRegTransform

    return VICRegTransform(
        input_size=side, cj_prob=params.jitter_p, cj_strength=1.0, cj_bright=params.brightness,
        cj_contrast=params.contrast, cj_sat=params.saturation if channels == 3 else 0.0,
        cj_hue=params.hue if channels == 3 else 0.0, min_scale=params.crop_scale[0],
        random_gray_scale=params.grayscale_p, solarize_prob=params.solarize_p, gaussian_blur=params.blur_p,
        sigmas=params.blur_sigma, hf_prob=params.flip_p, normalize={"mean": list(mean), "std": list(std)},
    )  # fmt: skip


def bench_reference(images: Tensor, params: AugmentParams, mean, std, args, device, workers: int) -> Row:
    from lightly.loss import VICRegLoss as LightlyVICRegLoss

    torch.manual_seed(0)
    reset_peak_memory(device)
    transform = reference_transform(params, images.shape[-1], images.shape[1], mean, std)
    loader = torch.utils.data.DataLoader(
        PILImages(images, transform), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
    )  # fmt: skip
    f, h, optimizer = build_model(args.encoder, images, device, channels_last=False)
    criterion = LightlyVICRegLoss()
    batches = forever(loader)

    def step() -> None:
        view_a, view_b = (v.to(device, non_blocking=True) for v in next(batches))
        loss = criterion(h(f(view_a)), h(f(view_b)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = timed(step, args.steps, args.warmup, device)
    peak = peak_memory_mb(device)
    batches.close()  # lets the loader's persistent workers go
    row = Row(f"reference, {workers} workers", args.batch_size / seconds, seconds * 1e3, peak)
    return row


def forever(loader) -> Iterator:
    while True:
        yield from loader


# ---------------------------------------------------------------- downstream passes


def bench_downstream(f: torch.nn.Module, train: Tensor, train_y: Tensor, test: Tensor, test_y: Tensor, mean, std,
                     device: torch.device, channels_last: bool) -> dict[str, float]:  # fmt: skip
    from sklearn.neighbors import NearestNeighbors

    train_x = encode(f, train, mean, std, device, channels_last=channels_last)
    test_x = encode(f, test, mean, std, device, channels_last=channels_last)
    out = {"features": f"{tuple(train_x.shape)} train, {tuple(test_x.shape)} test"}
    start = time.perf_counter()
    probe = linear_probe(train_x, train_y, test_x, test_y, device=device)
    sync(device)
    out["linear_probe_s"] = time.perf_counter() - start
    out["linear_probe_test_accuracy"] = probe.test_accuracy
    start = time.perf_counter()
    faiss_scores = inverse_density_score(train_x, test_x, k=2)
    out["knn_faiss_s"] = time.perf_counter() - start
    start = time.perf_counter()
    distances, _ = NearestNeighbors(n_neighbors=2).fit(train_x.numpy()).kneighbors(test_x.numpy())
    out["knn_sklearn_s"] = time.perf_counter() - start
    out["knn_max_score_difference"] = float(np.abs(distances.mean(axis=1) - faiss_scores).max())
    return out


def profile(images: Tensor, params: AugmentParams, mean, std, args, device, rows: int = 18) -> str:
    """torch.profiler's table of the lfr training step's operators by self time, over
    ``args.profile`` steps, and a summary that adds the augmentation (profiled apart, so
    its blur convolutions are not counted as the model's)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data = images.to(device)
    make_views = augmented_pair(Augment(params, mean, std), args.channels_last)
    f, h, optimizer = build_model(args.encoder, images, device, args.channels_last)
    objective, generator = VICRegLoss(), torch.Generator(device=device).manual_seed(0)
    batches = batch_indices(len(data), args.batch_size, generator)
    amp = args.amp and device.type == "cuda"

    def views() -> tuple[Tensor, Tensor]:
        index = next(batches)
        return make_views(data[index], index, generator)

    for _ in range(args.warmup):
        train_step(f, h, objective, optimizer, *views(), amp)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    pairs = [views() for _ in range(args.profile)]
    with torch_profile(activities=activities) as training:
        for view_a, view_b in pairs:
            train_step(f, h, objective, optimizer, view_a, view_b, amp)
        sync(device)
    with torch_profile(activities=activities) as augmenting:
        for _ in range(args.profile):
            views()
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = training.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=48)
    augment_total = sum(event.self_cpu_time_total for event in augmenting.key_averages())
    return table + "\n" + profile_summary(training.key_averages(), augment_total, args.profile)


# Operator-name fragments -> what they are, for the profile summary (first match wins).
CATEGORIES = (
    ("convolution", "convolutions (forward and backward)"),
    ("batch_norm", "batch norm (forward and backward)"),
    ("threshold", "ReLU (forward and backward)"),
    ("relu", "ReLU (forward and backward)"),
    ("clamp_min", "ReLU (forward and backward)"),
    ("mm", "matrix products (linear layers, loss)"),
)


def profile_summary(events, augment_total: float, steps: int) -> str:
    """Self CPU time per step by kind of work: the model's arithmetic, the augmentation, the rest."""
    totals = {name: 0.0 for _, name in CATEGORIES}
    for event in events:
        kind = next((name for fragment, name in CATEGORIES if fragment in event.key), None)
        if event.key.startswith("aten::") and kind is not None:
            totals[kind] += event.self_cpu_time_total
    training_total = sum(event.self_cpu_time_total for event in events)
    step_total = training_total + augment_total
    parts = [*totals.items(), ("augmentation (both views)", augment_total),
             ("everything else (optimiser, loss, Python, copies)", training_total - sum(totals.values()))]  # fmt: skip
    lines = [f"self CPU time per step: {step_total / steps / 1e3:.1f} ms (the profiler's overhead included)"]
    lines += [f"  {name:<52} {value / steps / 1e3:7.1f} ms  {value / step_total:6.1%}" for name, value in parts]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    parser.add_argument(
        "--data", default="fashion_mnist", help="a data set name, or synthetic_cifar10 (default: %(default)s)"
    )
    parser.add_argument("--train-size", type=int, default=None, help="use this many training images (default: all)")
    parser.add_argument("--encoder", default="convnet", help="convnet | resnet18 (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each row")
    parser.add_argument(
        "--ref-workers",
        default=None,
        help="comma-separated DataLoader worker counts for the reference (default: 0 and the number of CPUs)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    parser.add_argument("--compile", action="store_true", help="add a row with torch.compile")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-downstream", action="store_true")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print torch.profiler's table over N lfr steps"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)  # fmt: skip

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train, train_y, test, test_y, mean, std = load_images(args.data, args.train_size)
    params = AugmentParams()  # the vicreg experiment's default recipe (the course's)
    cpus = os.cpu_count() or 1
    workers = [int(w) for w in args.ref_workers.split(",")] if args.ref_workers else sorted({0, cpus})
    header = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": cpus,
        "cpu": cpu_name(),
        "data": f"{args.data}: {len(train)} train images of {tuple(train.shape[1:])}",
        "encoder": args.encoder,
        "batch_size": args.batch_size,
        "steps": f"median of {args.steps} after {args.warmup} warm-up",
    }
    for key, value in header.items():
        print(f"{key:>11}: {value}")

    if args.profile:
        print(profile(train, params, mean, std, args, device))
        return

    rows: list[Row] = []
    defaults = {"amp": args.amp and device.type == "cuda", "channels_last": args.channels_last}
    row, f = bench_lfr(train, params, mean, std, args, device, compile=False, label="lfr", **defaults)
    rows.append(row)
    if defaults != {"amp": False, "channels_last": False}:  # the model as the reference runs it
        rows.append(bench_lfr(train, params, mean, std, args, device, amp=False, channels_last=False, compile=False,
                              label="lfr, float32, default layout")[0])  # fmt: skip
    if args.compile:
        rows.append(bench_lfr(train, params, mean, std, args, device, compile=True, label="lfr + torch.compile",
                              **defaults)[0])  # fmt: skip
    if not args.skip_reference:
        try:
            import lightly  # noqa: F401
        except ImportError:
            print("reference skipped: the lightly package is not installed (pip install lightly==1.6.0)")
        else:
            rows.extend(bench_reference(train, params, mean, std, args, device, w) for w in workers)

    print(f"\n{'pipeline':<30} {'images/s':>9} {'ms/step':>8} {'peak MB':>8} {'augment':>8}")
    for r in rows:
        share = f"{r.augment_share:.1%}" if r.augment_share is not None else ""
        print(f"{r.pipeline:<30} {r.images_per_s:>9.0f} {r.ms_per_step:>8.1f} {r.peak_memory_mb:>8.0f} {share:>8}")
    references = [r for r in rows if r.pipeline.startswith("reference")]
    results: dict = {"header": header, "rows": [asdict(r) for r in rows]}
    if references:
        best = max(references, key=lambda r: r.images_per_s)
        ratio = rows[0].images_per_s / best.images_per_s
        results["ratio_vs_best_reference"] = ratio
        print(f"\nlfr / best reference ({best.pipeline}): {ratio:.2f}x images/s")
    print(f"lfr augmentation share of the step: {rows[0].augment_share:.1%}")

    if not args.skip_downstream:
        downstream = bench_downstream(f, train, train_y, test, test_y, mean, std, device, args.channels_last)
        results["downstream"] = downstream
        print(f"\nlinear probe (50 epochs, {downstream['features']}): {downstream['linear_probe_s']:.2f} s")
        print(f"kNN anomaly scores, k=2: faiss {downstream['knn_faiss_s']:.2f} s, scikit-learn "
              f"{downstream['knn_sklearn_s']:.2f} s ({downstream['knn_sklearn_s'] / downstream['knn_faiss_s']:.1f}x), "
              f"largest score difference {downstream['knn_max_score_difference']:.1e}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()

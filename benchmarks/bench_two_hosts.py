"""One VICReg run across two hosts against the same run on one host, and what the link carries per step.

    python benchmarks/bench_two_hosts.py                                 # as root: prints the tables
    python benchmarks/bench_two_hosts.py --write benchmarks/RESULTS.md   # and puts them there

It makes the two-host cluster of ``tests/two_hosts.py`` (network namespaces joined by a
veth link, a two-node Slurm) and times ``experiments/vicreg.py`` at smoke scale on more
images three ways, each from the run's own per-step metric times (steps/s over the
training steps after the first, which compiles and warms up) and the job's wall time:

* one process (``python experiments/vicreg.py``) on one host;
* two processes on one host (``torchrun --standalone --nproc_per_node=2``);
* one process on each host (the README's ``srun torchrun --nnodes=2`` recipe through ``sbatch``).

The link between the namespaces is a kernel veth pair: it measures the protocol's
round trips (rendezvous, gloo's all-gather and all-reduce per step), not a network's
bandwidth. What a real link would cost is computed on paper from the sizes of ``full``'s
networks and batch (bytes per step a rank sends and receives), at 10 GbE and at InfiniBand
HDR (200 Gb/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

BEGIN, END = "<!-- bench_two_hosts: begin -->", "<!-- bench_two_hosts: end -->"
RUN = ["experiments/vicreg.py", "with", "smoke", "device=cpu", "tsne_points=64"]
LINKS = {"10 GbE": 10e9 / 8, "InfiniBand HDR (200 Gb/s)": 200e9 / 8}  # bytes/s


def on_paper(world: int = 2) -> dict[str, float]:
    """Bytes one rank sends (= receives) per step at ``full``: the projections' all-gathers
    (two views, forward), their gradients' all-reduce (backward) and DDP's gradient all-reduce.
    A ring all-reduce of n bytes moves 2 (W-1)/W n per rank; an all-gather (W-1)/W n."""
    from lfr_report.models import Projector, build_encoder
    from lfr_report.models.encoders import encoder_arch

    batch, encoder_dim, projector_dim = 256, 128, 512  # vicreg.py's config (full keeps them)
    arch = encoder_arch("resnet18", 3, encoder_dim, 32, [32, 64, 128], "flatten")
    parameters = sum(p.numel() for m in (build_encoder(**arch), Projector(encoder_dim, projector_dim))
                     for p in m.parameters())  # fmt: skip
    share = (world - 1) / world
    z = batch * projector_dim * 4  # one view's projections of the global batch, float32
    moved = {"all-gather of z (2 views)": 2 * share * z, "all-reduce of dL/dz (2 views)": 2 * 2 * share * z,
             "DDP all-reduce of the gradients": 2 * share * parameters * 4}  # fmt: skip
    return {"parameters": parameters, **moved}


def steps_per_s(run_dir: Path) -> tuple[float, int]:
    """Training steps per second after the first step, from the per-step metric times; and the steps."""
    metrics = json.loads((run_dir / "metrics.json").read_text())["train_loss"]
    times = [datetime.fromisoformat(t).timestamp() for t in metrics["timestamps"]]
    steps = metrics["steps"]
    return (steps[-1] - steps[0]) / max(times[-1] - times[0], 1e-9), len(steps)


def one_run(store: Path) -> Path:
    (run,) = [p for p in store.iterdir() if p.name.isdigit()]
    status = json.loads((run / "run.json").read_text())["status"]
    if status != "COMPLETED":
        raise SystemExit(f"the run in {store} is {status}: see its cout.txt")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=2048, help="training images (smoke's synthetic gratings: 2048 at most)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--write", type=Path, help="put the results in this file (its own section)")
    args = parser.parse_args()
    import two_hosts
    from bench_report import machine

    reason = two_hosts.why_not()
    if reason:
        raise SystemExit(f"error: {reason}")
    run = [
        *RUN,
        f"data.train_size={args.images}",
        f"batch_size={args.batch_size}",
        f"epochs={args.epochs}",
        "log_every=1",
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-two-hosts-"))
    bin_dir = Path(sys.executable).parent
    rows = []

    def timed(name: str, command: list[str], env: dict[str, str]) -> None:
        start = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        marks = work / "marks"
        if marks.is_file():  # the job's own start and end (sbatch --wait polls with growing pauses)
            begin, end = (float(t) for t in marks.read_text().split())
            wall = end - begin
            marks.unlink()
        rate, steps = steps_per_s(one_run(Path(env["LFR_RUNS_DIR"])))
        rows.append((name, wall, rate, steps))
        print(f"{name}: {wall:.1f} s wall, {rate:.2f} steps/s over {steps} steps", flush=True)

    def store(name: str) -> dict[str, str]:
        return {**os.environ, "LFR_RUNS_DIR": str(work / name / "runs"),
                "LFR_CHECKPOINT_DIR": str(work / name / "checkpoints"), "PYTHONPATH": str(REPO),
                "PATH": f"{bin_dir}:{os.environ['PATH']}:/usr/sbin:/sbin"}  # fmt: skip

    timed("one process, one host", [sys.executable, *run], store("one"))
    timed("two processes, one host (torchrun --standalone)",
          [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *run], store("local"))  # fmt: skip
    with two_hosts.two_host_cluster(work / "cluster", tag="bench") as cluster:
        batch = work / "job.sh"
        head = cluster.hosts[0]
        batch.write_text("#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1 --cpus-per-task=1\n"
                         f"date +%s.%N > {work}/marks\n"
                         'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
                         'srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node=1 --rdzv_id="$SLURM_JOB_ID" '
                         f'--rdzv_backend=c10d --rdzv_endpoint="$head:29500" {" ".join(run)}\n'
                         f"date +%s.%N >> {work}/marks\n")  # fmt: skip
        timed("one process on each of two hosts (srun torchrun --nnodes=2)",
              head.command("sbatch", "--wait", f"--output={work}/job.out", str(batch)), {**cluster.env, **store("two")})  # fmt: skip
    paper = on_paper()
    lines = [f"## One run across two hosts: {datetime.now(UTC):%Y-%m-%d}", "",
             f"Machine: {machine()}; the two hosts are "
             "network namespaces on it joined by a veth link (tests/two_hosts.py), one Slurm node each with one CPU.",
             f"Command: `python benchmarks/bench_two_hosts.py` (as root). The run: `{' '.join(run)}` "
             f"({args.images} synthetic images, global batch {args.batch_size}, {args.epochs} epochs; gloo). Wall time: the "
             "process from start to end; on two hosts, the batch script's srun line (torchrun on both hosts, their "
             "rendezvous, the run). Steps/s: the run's per-step metric times, first step to last.", "",
             "| how | wall time | training steps/s | steps |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {wall:.1f} s | {rate:.2f} | {steps} |" for name, wall, rate, steps in rows]
    lines += ["", "Smoke's network is tiny, so a step is the collectives' round trips and Python rather than arithmetic: "
              "split over processes it is slower, more so across the link. Splitting pays when a step's compute "
              "(ResNet-18 at `full`, on GPUs) outweighs the traffic below."]  # fmt: skip
    total = sum(v for k, v in paper.items() if k != "parameters")
    lines += ["", f"What one rank sends (and receives) per step at `full` (ResNet-18 and projector: "
              f"{paper['parameters'] / 1e6:.2f} M parameters; batch 256, projector 512; float32; 2 ranks):", "",
              "| traffic | MB per step |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v / 1e6:.2f} |" for k, v in paper.items() if k != "parameters"]
    lines += [f"| total | {total / 1e6:.2f} |", ""]
    lines += [f"- on {link}: {1e3 * total / speed:.1f} ms per step at line rate" for link, speed in LINKS.items()]
    lines += ["", "The gradients' all-reduce is nearly all of it; DDP overlaps it with the backward pass "
              "(buckets), so a step slows by what the link cannot hide."]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.write:
        old = args.write.read_text() if args.write.is_file() else ""
        section = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in old:
            new = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END) :]
        else:
            new = old.rstrip() + "\n\n" + section + "\n"
        args.write.write_text(new)


if __name__ == "__main__":
    main()

"""Time the build of the reports: every report from an empty store, then again with the store full.

    python benchmarks/bench_report.py                                  # all reports, default scale
    python benchmarks/bench_report.py --reports simclr --executor inline
    python benchmarks/bench_report.py --write benchmarks/RESULTS.md    # and put the tables there
    python benchmarks/bench_report.py --analyse bench-report-X --write benchmarks/RESULTS.md   # tables again

It runs ``python -m lfr_report report <reports> --scale <scale> --executor <executor>`` from
this checkout in a new folder of its own (``--work``: its runs/, checkpoints/, jobs/,
reports/ and build.log; the data sets are read from the checkout's data folder, as
``make report`` reads them), with nothing reused, and times it. Then it reads each run's
start and stop time from that store, per run and per report, and builds a second time with
the store full. The figures are what this machine did while the script ran: run it with
nothing else on the cores. ``--write`` replaces the section it wrote before in that file
(or adds one), with the machine, the date and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- bench_report: begin -->", "<!-- bench_report: end -->"


def build(args: argparse.Namespace, work: Path, log_name: str) -> tuple[float, dict[str, float]]:
    """Run the build, echoing its lines; its wall time and when each PDF was written (s since the start)."""
    env = {**os.environ, "LFR_RUNS_DIR": str(work / "runs"), "LFR_CHECKPOINT_DIR": str(work / "checkpoints"),
           "LFR_DATA_DIR": str(Path(os.environ.get("LFR_DATA_DIR", REPO / "data")).resolve())}  # fmt: skip
    env.pop("LFR_MONGO_URL", None)
    env["PYTHONUNBUFFERED"] = "1"  # each line when it happens: the PDFs' times are read from them
    command = [sys.executable, "-m", "lfr_report", "report", *args.reports, "--scale", args.scale,
               "--executor", args.executor, "--out", str(work / "reports"), "--jobs-dir", str(work / "jobs"),
               *(["--parallel", str(args.parallel)] if args.parallel else [])]  # fmt: skip
    written: dict[str, float] = {}
    start = time.monotonic()
    with (work / log_name).open("w") as log, subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                                              stderr=subprocess.STDOUT, text=True) as proc:  # fmt: skip
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
            found = re.match(r"report written: .*/(\w+)\.pdf", line)
            if found:
                written[found.group(1)] = time.monotonic() - start
    if proc.returncode:
        sys.exit(f"the build failed (exit {proc.returncode}); its output: {work / log_name}")
    return time.monotonic() - start, written


def run_times(store, reports: list[str], scale: str) -> dict[str, list[tuple[str, str, float]]]:
    """Per report: (run id, command, seconds from start to stop) of each run it used."""
    from lfr_report.registry import report
    from lfr_report.running.launch import plan

    times = {}
    for name in reports:
        rows = []
        for p in plan(report(name), store, scale):
            start, stop = (datetime.fromisoformat(t) for t in (p.run.start_time, p.run.stop_time))
            rows.append((p.run.id, p.command, (stop - start).total_seconds()))
        times[name] = rows
    return times


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))  # fmt: skip
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0))
    return f"{cpu}, {cores} cores usable, {memory / 2**20:.0f} GiB, {gpu}; torch {torch.__version__}"


def minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s"


def markdown(args, measured: dict, times, commit: str) -> str:
    first, written, again = measured["first_s"], measured["written_s"], measured["again_s"]
    total_runs = sum(len(rows) for rows in times.values())
    run_time = sum(t for rows in times.values() for _, _, t in rows)
    lines = [BEGIN, f"## `make report` from an empty store: {datetime.now(UTC):%Y-%m-%d}", "",
             f"Machine: {machine()}. Commit {commit} (as its runs recorded it).{' ' + measured['note'] if 'note' in measured else ''}", "",
             f"Command: `{measured['command']}` (the build it times: "
             f"`lfr report {' '.join(args.reports)} --scale {args.scale} --executor {args.executor}"
             f"{f' --parallel {args.parallel}' if args.parallel else ''}` into an empty store).", "",
             f"- from an empty store: **{minutes(first)}** for {total_runs} runs ({minutes(run_time)} of run time, "
             f"{run_time / first:.2f} runs busy on average)",
             f"- again with the store full: **{minutes(again)}**", "",
             "| report | runs | their run time | PDF written after |", "|---|---|---|---|"]  # fmt: skip
    for name, rows in times.items():
        lines.append(f"| {name} | {len(rows)} | {minutes(sum(t for *_, t in rows))} | "
                     f"{minutes(written[name]) if name in written else '-'} |")  # fmt: skip
    lines += ["", "| report | run | command | time |", "|---|---|---|---|"]
    for name, rows in times.items():
        for run_id, command, seconds in sorted(rows, key=lambda row: -row[2]):
            lines.append(f"| {name} | {run_id} | `{command}` | {minutes(seconds)} |")
    return "\n".join([*lines, "", END])


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", nargs="+", default=["all"], help="report names, or all (default)")
    parser.add_argument("--scale", default="default", choices=("smoke", "default", "full"))
    parser.add_argument("--executor", default="local", choices=("local", "inline"))
    parser.add_argument("--parallel", type=int, help="jobs at a time (default: lfr's, one per core)")
    parser.add_argument("--work", type=Path, help="a new folder for the build (default: bench-report-<time>/)")
    parser.add_argument("--write", type=Path, metavar="FILE", help="put the results in FILE (its own section)")
    parser.add_argument("--analyse", type=Path, metavar="WORK",
                        help="no build: the tables from a folder an earlier run of this script built (its times.json)")  # fmt: skip
    args = parser.parse_args()
    if args.analyse:
        work = args.analyse.resolve()
        times = json.loads((work / "times.json").read_text())
    else:
        work = (args.work or REPO / f"bench-report-{datetime.now():%Y%m%d-%H%M%S}").resolve()
        work.mkdir(parents=True, exist_ok=False)
        first, written = build(args, work, "build.log")
        again, _ = build(args, work, "again.log")
        times = {"first_s": first, "written_s": written, "again_s": again,
                 "command": f"python benchmarks/bench_report.py {' '.join(sys.argv[1:])}"}  # fmt: skip
        (work / "times.json").write_text(json.dumps(times, indent=1))

    from lfr_report.registry import REPORTS
    from lfr_report.tracking.store import FileRunStore

    os.environ.update(LFR_RUNS_DIR=str(work / "runs"), LFR_CHECKPOINT_DIR=str(work / "checkpoints"))  # as the build
    os.environ.pop("LFR_MONGO_URL", None)
    names = list(REPORTS) if "all" in args.reports else args.reports
    runs = run_times(FileRunStore(work / "runs"), names, args.scale)
    commit = FileRunStore(work / "runs").runs()[-1].info.get("git_commit")
    section = markdown(args, times, runs, commit)
    print(section)
    if args.write:
        write_section(args.write, section)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()

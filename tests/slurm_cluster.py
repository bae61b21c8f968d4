"""A real one-node Slurm cluster for tests: Debian's munged, slurmctld and slurmd (Slurm 22.05),
started as root from a slurm.conf in a temporary folder and stopped by their process ids.

Everything the daemons write (munge key and socket, state, spool, logs) stays in that
folder, on ports chosen free, so the cluster touches nothing of the machine's own.
There is no accounting database: ``sacct`` fails, and submitit then reads a job's end
from its result file, which is what the launcher relies on anyway.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lfr_report.tracking.local_stack import free_port

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")
START_TIMEOUT_S = 120  # a ceiling: the wait ends when sinfo says idle, or at once when a daemon dies
DRAIN_TIMEOUT_S = 30

SLURM_CONF = """\
ClusterName=lfrtest
SlurmctldHost={head}({head_addr})
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
{extra}{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def write_conf(root: Path, nodes: dict[str, str], ctld_port: int, d_port: int, cpus: int, extra: str = "") -> Path:
    """``root/slurm.conf`` for ``nodes`` (name -> address; the first runs slurmctld), each with its own
    spool, pid and log file (``%n``) under ``root``; munged's socket from ``prepare_munge``."""
    (head, head_addr), *_ = nodes.items()
    for name in nodes:
        (root / "spool" / name).mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"NodeName={name} NodeAddr={addr} CPUs={cpus} RealMemory=1000 State=UNKNOWN"
                      for name, addr in nodes.items())  # fmt: skip
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(head=head, head_addr=head_addr, ctld_port=ctld_port, d_port=d_port,
                                      munge_socket=root / "munge" / "munge.socket", root=root, nodes=lines,
                                      extra=extra))  # fmt: skip
    return conf


def prepare_munge(root: Path) -> list[str]:
    """The cluster's folders under ``root`` and a fresh munge key; the command that starts munged with them."""
    for sub in ("state", "spool", "log", "munge", "munge-key"):
        (root / sub).mkdir(parents=True)
    (root / "munge").chmod(0o755)  # munged wants its socket's folder readable by all
    (root / "munge-key").chmod(0o700)
    key = root / "munge-key" / "munge.key"
    subprocess.run([find("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
    return [find("munged"), "-F", "--force", "-S", str(root / "munge" / "munge.socket"), f"--key-file={key}",
            f"--log-file={root}/log/munged.log", f"--pid-file={root}/munge/munged.pid",
            f"--seed-file={root}/munge-key/seed"]  # fmt: skip


def find(binary: str) -> str | None:
    """The daemons live in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")


def why_not() -> str | None:
    """Why no cluster can start here (None: it can)."""
    missing = [b for b in BINARIES if find(b) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)}): bash scripts/system-deps.sh slurmctld slurmd slurm-client munge"
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root"
    return None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-1500:] if path.is_file() else "(no log)"


def _drain(env: dict[str, str]) -> None:
    """Wait until no job is left (a job's result file exists before its srun and slurmstepd have
    finished), then cancel what remains: daemons stopped under a running step leave it hanging."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    cancelled = False
    while time.monotonic() < deadline:
        queue = subprocess.run([find("squeue"), "-h", "-o", "%i"], env=env, capture_output=True, text=True)
        jobs = queue.stdout.split()
        if queue.returncode != 0 or not jobs:
            return
        if not cancelled and time.monotonic() > deadline - DRAIN_TIMEOUT_S / 2:
            subprocess.run([find("scancel"), "--full", *jobs], env=env, capture_output=True)
            cancelled = True
        time.sleep(0.5)


@contextmanager
def one_node_cluster(root: Path) -> Iterator[Path]:
    """Start the cluster under ``root``; yields its slurm.conf (point ``SLURM_CONF`` at it)."""
    munged = prepare_munge(root)
    host = socket.gethostname().split(".")[0]  # what slurmd calls its node
    conf = write_conf(root, {host: "127.0.0.1"}, free_port(), free_port(), os.cpu_count() or 1)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    processes: list[subprocess.Popen] = []

    def start(*command: str, log: str) -> None:
        with open(root / "log" / log, "wb") as out:
            processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))

    try:
        start(*munged, log="munged.out")
        start(find("slurmctld"), "-D", "-f", str(conf), log="slurmctld.out")
        start(find("slurmd"), "-D", "-f", str(conf), log="slurmd.out")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            state = subprocess.run([find("sinfo"), "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            dead = [p.args[0] for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"one-node Slurm did not come up ({', '.join(dead) or 'timeout'}; sinfo: "
                                   f"{state.stdout.strip() or state.stderr.strip()}):\n{_tail(root / 'log' / 'slurmctld.log')}"
                                   f"\n{_tail(root / 'log' / f'slurmd-{host}.log')}")  # fmt: skip
            time.sleep(0.5)
        yield conf
    finally:
        if len(processes) == 3 and all(p.poll() is None for p in processes):
            _drain(env)
        for process in reversed(processes):  # slurmd, slurmctld, munged: by their pids
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

"""Two hosts on one machine, joined by a network link, running a two-node Slurm cluster.

Each host is a network namespace (``ip netns``) with its own address on a veth link the
helper makes (a private /24 that exists on that link only) and its own host name (a UTS
namespace: what ``hostname``, Slurm and torchrun see); a hosts file naming both is mounted
over ``/etc/hosts`` in each host's processes (a mount namespace of their own). The hosts
reach each other over the link alone: nothing else is routed, and the machine's own
loopback is not theirs. They share the file system, as cluster nodes share ``/home``, and
with it munged's socket and key. (``ip netns exec`` is not used: it mounts a fresh
``/sys`` without the cgroup file systems that slurmd needs.)

``two_host_cluster`` starts munged, ``slurmctld`` on the first host and one ``slurmd`` per
host (node names ``<prefix>1`` and ``<prefix>2``, one CPU each, so a wave of jobs spreads
over both), and on leaving stops every process left in either namespace and deletes the
namespaces, even when the test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import slurm_cluster

SUBNET = "10.231.47"  # host n is SUBNET.n on the link; nothing outside the link has these addresses
CTLD_PORT, D_PORT = 6817, 6818  # each host has its own ports: the namespaces are empty
START_TIMEOUT_S = 120

CONF_EXTRA = "SlurmdTimeout=10\nMessageTimeout=5\n"  # a lost node is found down in about 10 s


def why_not() -> str | None:
    """Why two hosts cannot be made here (None: they can)."""
    reason = slurm_cluster.why_not()
    if reason:
        return reason
    missing = [b for b in ("ip", "nsenter", "unshare") if shutil.which(b, path="/usr/sbin:/sbin:/usr/bin:/bin") is None]
    if missing:
        return f"{', '.join(missing)} not installed: apt-get install iproute2 util-linux"
    return None


@dataclass
class Host:
    name: str  # its host name and Slurm node name
    netns: str
    address: str
    hosts_file: Path  # mounted over /etc/hosts: both hosts by name

    def command(self, *command: str) -> list[str]:
        """``command`` as run on this host: in its network namespace, with its host name and hosts file."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts", "--mount", "--", "sh", "-c",
                f'mount --bind {self.hosts_file} /etc/hosts && hostname {self.name} && exec "$@"', "sh",
                *command]  # fmt: skip


@dataclass
class Cluster:
    root: Path
    conf: Path
    hosts: tuple[Host, Host]
    env: dict[str, str]  # SLURM_CONF and PATH with Slurm's folders
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)  # by name: munged, slurmctld, slurmd-<host>

    def run(self, host: Host, *command: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        """Run ``command`` on ``host`` and wait for it."""
        return subprocess.run(host.command(*command), env={**self.env, **(env or {})}, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def start(self, name: str, host: Host, *command: str) -> None:
        """Start a daemon on ``host``; its output goes to log/<name>.out."""
        with open(self.root / "log" / f"{name}.out", "wb") as out:
            self.processes[name] = subprocess.Popen(host.command(*command), stdout=out, stderr=subprocess.STDOUT,
                                                    env=self.env)  # fmt: skip

    def nodes(self) -> dict[str, str]:
        """Each node's state as ``sinfo`` reports it (idle, alloc, down*, ...)."""
        out = self.run(self.hosts[0], slurm_cluster.find("sinfo"), "-h", "-N", "-o", "%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def log(self, name: str) -> str:
        path = self.root / "log" / name
        return path.read_text(errors="replace")[-2000:] if path.is_file() else f"(no {name})"

    def kill_node(self, host: Host) -> None:
        """The node disappears: its slurmd and every process on it are killed at once."""
        for pid in _pids(host.netns):
            _kill(pid)
        self.processes[f"slurmd-{host.name}"].wait(10)

    def revive(self, host: Host) -> None:
        """The node comes back: its slurmd started again, until Slurm has it idle."""
        if self.processes[f"slurmd-{host.name}"].poll() is None:
            return
        self.start(f"slurmd-{host.name}", host, slurm_cluster.find("slurmd"), "-D", "-f", str(self.conf))
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.nodes().get(host.name) != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{host.name} did not come back: {self.nodes()}\n{self.log(f'slurmd-{host.name}.log')}"
                )
            time.sleep(0.5)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _pids(netns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _make_hosts(prefix: str, tag: str, hosts_file: Path) -> tuple[Host, Host]:
    hosts = tuple(Host(f"{prefix}{i}", f"lfr-{tag}-{i}", f"{SUBNET}.{i}", hosts_file) for i in (1, 2))
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{h.address} {h.name}\n" for h in hosts))
    for host in hosts:
        _ip("netns", "add", host.netns)
        _ip("-n", host.netns, "link", "set", "lo", "up")
    a, b = hosts
    _ip("link", "add", f"v{tag}1", "netns", a.netns, "type", "veth", "peer", "name", f"v{tag}2", "netns", b.netns)
    for i, host in enumerate(hosts, 1):
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", f"v{tag}{i}")
        _ip("-n", host.netns, "link", "set", f"v{tag}{i}", "up")
    return hosts


def _remove_hosts(hosts: Sequence[Host]) -> None:
    for _ in range(50):  # every process left in the namespaces (job steps, torchrun workers), then the namespaces
        pids = [pid for host in hosts for pid in _pids(host.netns)]
        if not pids:
            break
        for pid in pids:
            _kill(pid)
        time.sleep(0.1)
    for host in hosts:
        subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)


def leftovers(tag: str) -> list[str]:
    """Namespaces of ``tag`` still on the machine (a test asserts there are none)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in names.splitlines() if line.startswith(f"lfr-{tag}-")]


@contextmanager
def two_host_cluster(root: Path, prefix: str = "node", tag: str | None = None) -> Iterator[Cluster]:
    """Make the two hosts and start the cluster under ``root``; yields the Cluster."""
    tag = tag or str(os.getpid())
    munged = slurm_cluster.prepare_munge(root)
    hosts = _make_hosts(prefix, tag, root / "hosts")
    cluster = None
    try:
        conf = slurm_cluster.write_conf(root, {h.name: h.address for h in hosts}, CTLD_PORT, D_PORT, 1, CONF_EXTRA)
        path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
        cluster = Cluster(root, conf, hosts, {**os.environ, "SLURM_CONF": str(conf), "PATH": path})
        cluster.start("munged", hosts[0], *munged)
        cluster.start("slurmctld", hosts[0], slurm_cluster.find("slurmctld"), "-D", "-f", str(conf))
        for host in hosts:
            cluster.start(f"slurmd-{host.name}", host, slurm_cluster.find("slurmd"), "-D", "-f", str(conf))
        deadline = time.monotonic() + START_TIMEOUT_S
        while set(cluster.nodes().values()) != {"idle"} or len(cluster.nodes()) != 2:
            dead = [name for name, p in cluster.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"two-host Slurm did not come up ({', '.join(dead) or 'timeout'}; nodes "
                                   f"{cluster.nodes()}):\n{cluster.log('slurmctld.log')}\n"
                                   + "\n".join(cluster.log(f"slurmd-{h.name}.log") for h in hosts))  # fmt: skip
            time.sleep(0.5)
        yield cluster
    finally:
        _remove_hosts(hosts)
        for process in cluster.processes.values() if cluster else ():
            process.wait(10)  # killed with their namespace: reaped here

"""Several "hosts" on one machine: network namespaces joined by a bridge, each its own hostname.

A multi-node test needs what separates real nodes for the code under test: each node has its
own network interface and address (so ranks reach each other over a network, never loopback),
its own hostname (what SLURM, the launcher and torch.distributed see) and a hosts file that
resolves every node's name. Each host is a network namespace with a veth pair into one bridge
(the "fabric") in the root namespace, which also holds the controller's address; processes
started with :meth:`VirtualHosts.command` run inside the namespace, in a UTS namespace with the
host's name, and see ``/etc/netns/<ns>/hosts`` as ``/etc/hosts`` (bind-mounted in a mount
namespace of their own). The file system stays shared, as a parallel file system is on a cluster.

Names carry this process's pid (``mosaic-<pid>-...``), so two test runs on one machine never
collide, and namespaces left by a killed run (dead pid) are removed by the next one. Needs root
and iproute2; the bridge is private (no address outside ``10.x.y.0/24``, no forwarding).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "mosaic-"
NETNS_ETC = Path("/etc/netns")
_OURS = re.compile(rf"^{PREFIX}(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie child of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def remove_stale() -> None:
    """Delete namespaces, bridges and hosts files of earlier runs whose process is gone."""
    for ns in _ip("netns", "list", check=False).stdout.split():
        found = _OURS.match(ns)
        if found and not pid_alive(int(found.group(1))):
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        found = re.match(r"^mz(\d+)b$", name)
        if found and not pid_alive(int(found.group(1))):
            _ip("link", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no interface of this machine uses."""
    used = []
    for token in _ip("-o", "-4", "addr", "show").stdout.split():
        try:
            used.append(ipaddress.ip_interface(token).network)
        except ValueError:
            continue  # not an address/prefix token
    rng = random.Random(os.getpid())
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{rng.randrange(64, 250)}.{rng.randrange(1, 250)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test network")


@dataclass
class VirtualHosts:
    """``names`` as hosts on a private bridge; the root namespace is ``gateway`` on it.

    Attributes:
        names: the hosts' names (hostname and SLURM node name), e.g. ``("mosaic-n1", "mosaic-n2")``.
        subnet: the bridge's /24; hosts get .11, .12, ..., the root namespace .1.
    """

    names: tuple[str, ...]
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    _created: list[str] = field(default_factory=list)
    _made_etc: bool = False

    @property
    def tag(self) -> str:
        return f"{PREFIX}{os.getpid()}"

    @property
    def bridge(self) -> str:
        return f"mz{os.getpid()}b"  # interface names are at most 15 characters

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def address(self, name: str) -> str:
        return str(self.subnet.network_address + 11 + self.names.index(name))

    def namespace(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def hosts_file(self, controller: str) -> str:
        lines = ["127.0.0.1 localhost", f"{self.gateway} {controller}"]
        return "\n".join(lines + [f"{self.address(n)} {n}" for n in self.names]) + "\n"

    def start(self, controller: str) -> None:
        """Create the bridge, one namespace per host and their hosts files; check they reach each other.

        Raises:
            RuntimeError: a step failed (everything created so far is removed first).
        """
        remove_stale()
        self._made_etc = not NETNS_ETC.exists()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._created.append("bridge")
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                ns, outside, inside = self.namespace(name), f"mz{os.getpid()}h{i}", f"mz{os.getpid()}p{i}"
                _ip("netns", "add", ns)
                self._created.append(ns)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", ns)
                _ip("link", "set", outside, "master", self.bridge, "up")
                _ip("-n", ns, "link", "set", inside, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.address(name)}/{self.subnet.prefixlen}", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
                (NETNS_ETC / ns / "hosts").write_text(self.hosts_file(controller))
            self._check_reachable()
        except BaseException:
            self.stop()
            raise

    def _check_reachable(self, timeout_s: float = 10.0) -> None:
        """Every host reaches the gateway and the other hosts (a refused TCP connection is a reply)."""
        probe = (
            "import socket, sys\n"
            "for a in sys.argv[1:]:\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            "    try: s.connect((a, 9))\n"
            "    except ConnectionRefusedError: pass\n"
        )
        targets = [self.gateway, *(self.address(n) for n in self.names)]
        deadline = time.monotonic() + timeout_s
        for name in self.names:
            while True:
                proc = subprocess.run(
                    self.command(name, ["python3", "-c", probe, *targets]), capture_output=True, text=True, timeout=30
                )
                if proc.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"host {name} cannot reach {targets}: {proc.stderr.strip()[-500:]}")
                time.sleep(0.5)

    def command(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run on host ``name``: in its network namespace, with its hostname and hosts file.

        ``nsenter --net`` rather than ``ip netns exec``, which remounts /sys for the namespace and so
        hides /sys/fs/cgroup from slurmd; the hosts file is bind-mounted in a private mount namespace.
        """
        ns = self.namespace(name)
        setup = 'mount --bind "$1" /etc/hosts && hostname "$0" && shift && exec "$@"'
        enter = ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--uts", "--"]
        return [*enter, "sh", "-c", setup, name, str(NETNS_ETC / ns / "hosts"), *argv]

    def stop(self) -> None:
        """Remove the namespaces (their veth ends go with them), the bridge and the hosts files."""
        for item in reversed(self._created):
            if item == "bridge":
                _ip("link", "del", self.bridge, check=False)
            else:
                _ip("netns", "del", item, check=False)
                shutil.rmtree(NETNS_ETC / item, ignore_errors=True)
        self._created.clear()
        if self._made_etc and NETNS_ETC.is_dir() and not any(NETNS_ETC.iterdir()):
            NETNS_ETC.rmdir()

"""A throw-away SLURM cluster for the launcher tests: one node, or several in network namespaces.

Starts Debian's ``munged``, ``slurmctld`` and ``slurmd`` with every path (key, sockets, state,
spool, logs, pid files) inside one temporary directory, on free TCP ports, so it neither needs
nor touches a system-wide SLURM or munge setup. The nodes advertise ``Feature=gpu`` so that
Perlmutter's ``#SBATCH -C gpu`` is accepted; they have no GPUs (no GRES), so jobs must override
the GPU request (see ``docs/hpc.md``).

One node (default): this machine, under its own hostname, on 127.0.0.1. Several nodes
(``hosts=VirtualHosts(...)``, see ``netns_hosts.py``): one ``slurmd -N <node>`` per host, each
inside its host's network namespace with that host's hostname and address; the controller and
munged stay in the root namespace, reached over the hosts' bridge (munge's socket is a file,
shared). A job step then really spans hosts: srun on the first node launches tasks through the
other node's slurmd, and the ranks talk over the bridge.

The daemons are stopped through the pids in their own pid files, never by process name, so a
cluster started by someone else on the same machine is left alone.

Recipe measured in ``/work/shared/feasibility.md`` ("SLURM on one machine"); needs root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from netns_hosts import VirtualHosts, pid_alive

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "srun", "sinfo", "squeue", "scontrol", "scancel")
TERMINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


def unavailable_reason() -> str | None:
    """Say why a local SLURM cluster cannot be started here, or None when it can.

    Returns:
        A one-line reason naming what is missing, or None.
    """
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        return (
            f"SLURM not installed (missing {', '.join(missing)}); run .ci/install_slurm.sh as root to enable this test"
        )
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd and munged run as root / munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the 'munge' user does not exist (munge package incompletely installed)"
    return None


def _which(name: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which(name, path=path)


def _free_ports(n_ports: int) -> list[int]:
    """Pick ``n_ports`` distinct free TCP ports (bound at once so they differ)."""
    socks = []
    try:
        for _ in range(n_ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class SlurmCluster:
    """One controller + one compute node on this machine, or one node per virtual host.

    Attributes:
        root_dir: Temporary directory holding config, key, state, spool, logs and pid files.
        n_cpus: CPUs each node advertises (one node: the machine's cores).
        features: Node features; ``gpu`` makes ``-C gpu`` valid.
        node_name: This machine's name: the controller's, and the node's when there is one.
        hosts: Virtual hosts to run one node each (multi-node), or None (this machine is the node).
    """

    root_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mosaic-slurm-")))
    n_cpus: int = 2
    features: tuple[str, ...] = ("gpu",)
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    partition: str = "debug"
    hosts: VirtualHosts | None = None
    _started: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.hosts.names if self.hosts is not None else (self.node_name,)

    def node_address(self, node: str) -> str:
        return self.hosts.address(node) if self.hosts is not None else "127.0.0.1"

    @property
    def controller_address(self) -> str:
        return self.hosts.gateway if self.hosts is not None else "127.0.0.1"

    @property
    def conf_path(self) -> Path:
        return self.root_dir / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root_dir / "munge" / "munge.socket"

    def pid_path(self, daemon: str) -> Path:
        return self.root_dir / "run" / f"{daemon}.pid"

    def log_path(self, daemon: str) -> Path:
        return self.root_dir / "log" / f"{daemon}.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, srun, sinfo, ...) talking to this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf_path)
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
        # Inherited SLURM_*/SBATCH_* variables (e.g. when pytest itself runs inside a job)
        # would leak into the test jobs.
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SALLOC_")) and key != "SLURM_CONF":
                del env[key]
        return env

    # ------------------------------------------------------------------ setup

    def write_files(self) -> None:
        """Create the directory tree, the munge key and slurm.conf."""
        root = self.root_dir
        # munged runs as the 'munge' user and must be able to reach its files.
        root.chmod(0o755)
        for sub in ("etc", "state", "spool", "log", "run", "munge"):
            (root / sub).mkdir(exist_ok=True)
        munge = pwd.getpwnam("munge")
        munge_dir = root / "munge"
        key_path = munge_dir / "munge.key"
        key_path.write_bytes(os.urandom(1024))
        key_path.chmod(0o400)
        for path in (munge_dir, key_path):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        munge_dir.chmod(0o700)
        # munged writes its own log and pid file.
        for sub in ("log", "run"):
            (root / sub).chmod(0o777)
        ctld_port, slurmd_port = _free_ports(2)
        features = ",".join(self.features)
        node_lines = "\n".join(
            f"NodeName={n} NodeAddr={self.node_address(n)} CPUs={self.n_cpus} RealMemory=4000 Feature={features} "
            "State=UNKNOWN"
            for n in self.nodes
        )
        conf = f"""\
# Generated by tests/integration/slurm_cluster.py; removed with the cluster.
ClusterName=mosaictest
SlurmctldHost={self.node_name}({self.controller_address})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s).
AuthInfo=socket={self.munge_socket},cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation={root / "state"}
# %n: each node's slurmd (several on this machine) keeps its own spool, pid file and log.
SlurmdSpoolDir={root / "spool" / "%n"}
SlurmctldPidFile={self.pid_path("slurmctld")}
SlurmdPidFile={self.pid_path("slurmd-%n")}
SlurmctldLogFile={self.log_path("slurmctld")}
SlurmdLogFile={self.log_path("slurmd-%n")}
SlurmctldDebug=info
SlurmdDebug=info
# Short timers: the test cluster lives for a minute or two.
SchedulerParameters=sched_interval=2
MinJobAge=60
KillWait=5
InactiveLimit=0
MessageTimeout=20
{node_lines}
PartitionName={self.partition} Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf_path.write_text(conf)

    def start(self, timeout_s: float = 60.0) -> None:
        """Write the files, start munged, slurmctld and slurmd, and wait for an idle node.

        Raises:
            RuntimeError: A daemon did not start, or the node did not become idle in time; the
                message carries the tail of the daemons' logs. Daemons already started are
                stopped first.
        """
        try:
            if self.hosts is not None:
                self.hosts.start(controller=self.node_name)
            self.write_files()
            self._start_munged()
            self._start_daemon("slurmctld", ["slurmctld", "-f", str(self.conf_path)])
            for node in self.nodes:
                (self.root_dir / "spool" / node).mkdir(parents=True, exist_ok=True)
                cmd = [_which("slurmd") or "slurmd", "-f", str(self.conf_path), "-N", node]
                self._run_daemon(f"slurmd-{node}", self.hosts.command(node, cmd) if self.hosts is not None else cmd)
            self.wait_idle(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start_munged(self) -> None:
        cmd = [
            _which("runuser") or "runuser",
            "-u",
            "munge",
            "--",
            _which("munged") or "munged",
            f"--key-file={self.root_dir / 'munge' / 'munge.key'}",
            f"--socket={self.munge_socket}",
            f"--pid-file={self.pid_path('munged')}",
            f"--log-file={self.log_path('munged')}",
            f"--seed-file={self.root_dir / 'munge' / 'munged.seed'}",
            # /tmp-style parents are group/world writable (sticky); accept them.
            "--force",
        ]
        self._run_daemon("munged", cmd)

    def _start_daemon(self, name: str, cmd: list[str]) -> None:
        cmd = [_which(cmd[0]) or cmd[0], *cmd[1:]]
        self._run_daemon(name, cmd)

    def node_state(self, node: str) -> str:
        """The node's state as ``sinfo`` prints it (idle, alloc, drain, ...)."""
        proc = self.client(["sinfo", "-h", "-n", node, "-N", "-o", "%T"])
        return proc.stdout.strip().rstrip("*")

    def _run_daemon(self, name: str, cmd: list[str]) -> None:
        # Each daemon forks into the background and writes its pid file; the command returns.
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{name} failed to start (exit {proc.returncode}): {proc.stderr.strip()} {self.log_tail(name)}"
            )
        self._started.append(name)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._read_pid(name) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} wrote no pid file: {self.log_tail(name)}")

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until ``sinfo`` reports every node idle."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
            state = (proc.stdout + proc.stderr).strip()
            states = [s.rstrip("*") for s in state.split()]
            if proc.returncode == 0 and states == ["idle"] * len(self.nodes):
                return
            time.sleep(0.5)
        logs = " ".join(self.log_tail(f"slurmd-{n}") for n in self.nodes)
        raise RuntimeError(
            f"nodes not idle after {timeout_s:.0f} s (sinfo: {state!r}); {self.log_tail('slurmctld')} {logs}"
        )

    # --------------------------------------------------------------- teardown

    def _read_pid(self, name: str) -> int | None:
        try:
            text = self.pid_path(name).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the daemons this object started, by the pids in their pid files.

        slurmd first (it may still be running job steps), then the controller, then munged, then
        the virtual hosts. SIGTERM, then SIGKILL after ``timeout_s``. Never kills by process name.
        """
        for name in (*(f"slurmd-{n}" for n in self.nodes), "slurmctld", "munged"):
            if name not in self._started:
                continue
            pid = self._read_pid(name)
            if pid is None:
                continue
            _terminate(pid, timeout_s)
            self._started.remove(name)
        if self.hosts is not None:
            self.hosts.stop()

    def cleanup(self) -> None:
        """Stop the daemons and delete the temporary directory."""
        self.stop()
        shutil.rmtree(self.root_dir, ignore_errors=True)

    # ---------------------------------------------------------------- helpers

    def log_tail(self, name: str, n_lines: int = 15) -> str:
        try:
            lines = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return f"[{name}: no log]"
        return f"[{name} log: " + " | ".join(lines[-n_lines:]) + "]"

    def sbatch(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sbatch --wait ARGS`` against this cluster and return the finished process."""
        full_env = self.env
        if env:
            full_env.update(env)
        return subprocess.run(
            ["sbatch", "--wait", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def client(self, args: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command (scontrol, scancel, squeue, ...) against this cluster."""
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, RestartCnt, ...); {} when unknown."""
        proc = self.client(["scontrol", "show", "job", "-o", job_id])
        info: dict[str, str] = {}
        for token in proc.stdout.split():
            key, sep, value = token.partition("=")
            if sep and key not in info:
                info[key] = value
        return info

    def wait_job(self, job_id: str, timeout_s: float = 180.0) -> dict[str, str]:
        """Wait until the job reaches a terminal state (through any requeues); its info."""
        deadline = time.monotonic() + timeout_s
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job_info(job_id)
            if info.get("JobState") in TERMINAL_STATES:
                return info
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} not finished after {timeout_s:.0f} s: {info}")

    def submit(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
        """``sbatch --parsable ARGS`` with ``env`` on top of the cluster's; the job id.

        Raises:
            RuntimeError: sbatch refused the job (its message).
        """
        full_env = self.env | (env or {})
        cmd = ["sbatch", "--parsable", *args]
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch failed: {proc.stderr.strip()}")
        return proc.stdout.strip().split(";")[0]

    def submit_and_wait(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = 300.0,
    ) -> dict[str, str]:
        """``sbatch --parsable ARGS``, then wait for the job's end (through requeues); its info.

        Same as ``sbatch --wait`` but polled every 0.5 s: sbatch's own poll interval doubles up
        to a minute, which would add tens of seconds to every test job.
        """
        job_id = self.submit(args, cwd=cwd, env=env)
        info = self.wait_job(job_id, timeout_s)
        info["JobId"] = job_id
        return info

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _terminate(pid: int, timeout_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

"""One trainer per run directory: an exclusive lock held by rank 0 for the whole run.

Two trainers writing into one ``--out`` delete each other's temporary checkpoint directories,
interleave ``metrics.jsonl`` and race on ``checkpoints/latest``. Rank 0 therefore takes an
exclusive ``flock`` on ``RUN/trainer.lock`` before anything is written and keeps it until the
run ends. The kernel (or, on a shared file system that supports it, the lock server) releases
it when the process dies, also by ``kill -9`` or a node failure, so a stale lock never blocks a
requeued job. The file records who holds it (host, pid, job id, start time) for the message the
second trainer prints.

Some shared file systems are mounted without lock support (Lustre ``noflock``, old NFS); there
the lock cannot be taken, and a warning says that two trainers in one run directory cannot be
detected, instead of failing every run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("mosaic_hpc.train")

LOCK_FILE = "trainer.lock"
JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID")
# errno values meaning "this file system does not do locks" rather than "someone holds it".
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunDirectoryInUseError(ValueError):
    """Another trainer holds the run directory's lock."""


def _holder(fh: IO[str]) -> str:
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        return "another trainer"
    job = f", job {info['job']}" if info.get("job") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{job}, since {info.get('since', '?')}"


class RunLock:
    """The lock of one run directory (a context manager; :meth:`acquire` / :meth:`release`)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise naming the trainer that holds it.

        Raises:
            RunDirectoryInUseError: another live trainer holds the lock.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fh)
            fh.close()
            raise RunDirectoryInUseError(
                f"{self.path.parent} is in use by another trainer ({holder}): two trainers in one run directory "
                "would overwrite each other's checkpoints and metrics; wait for it to end or choose another --out"
            ) from None
        except OSError as err:
            if err.errno not in UNSUPPORTED:
                fh.close()
                raise
            log.warning(
                "%s: the file system does not support locks (%s); a second trainer in this run directory "
                "cannot be detected",
                self.path,
                os.strerror(err.errno),
            )
        job = next((os.environ[v] for v in JOB_ID_VARS if os.environ.get(v)), "")
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "job": job, "since": since}) + "\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock (the file stays: deleting it would race with a trainer that just opened it)."""
        if self._fh is not None:
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            except OSError:
                pass  # never held (a file system without locks); closing is all there is to do
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

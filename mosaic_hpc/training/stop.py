"""When to stop early: SIGTERM/SIGUSR1 from the batch system, or a wall-time budget.

SLURM (``--signal=USR1@120``) and PBS send a signal before killing a job at its wall time, and
preemption sends SIGTERM. The handler only sets a flag; the loop checks it between steps, saves
a checkpoint and exits 0, so the job can be requeued and resume. With several ranks the flag is
combined over ranks (any rank stopping stops all) by the ``agree`` function the engine provides,
so every rank reaches the collective checkpoint save together.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """A flag set by signals or by the wall-time budget."""

    def __init__(self, wall_time_budget_s: float = 0.0, agree: Callable[[bool], bool] = lambda flag: flag) -> None:
        self.deadline = time.monotonic() + wall_time_budget_s if wall_time_budget_s > 0 else None
        self.agree = agree
        self.reason = ""
        self._previous: dict[int, object] = {}

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.reason = self.reason or f"received {signal.Signals(signum).name}"

    def should_stop(self) -> bool:
        """True on every rank once any rank has a reason to stop (a collective when distributed)."""
        if not self.reason and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "wall-time budget reached"
        stop = self.agree(bool(self.reason))
        if stop and not self.reason:
            self.reason = "another rank is stopping"
        return stop

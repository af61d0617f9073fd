"""Which code produced a result: the commit every benchmark record and exported model carries.

Below every other layer, so training, export and the benchmarks record it the same way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DIRTY = " (with uncommitted changes)"


def git_commit() -> str:
    """The checkout's short commit, with ``DIRTY`` appended when the working tree differs from it.

    Outside a git checkout (a copy of the tree without .git on a batch node, an installed wheel)
    it is ``$GIT_COMMIT`` where the job script set it, else ``unknown``.
    """
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return os.environ.get("GIT_COMMIT") or "unknown"
    return sha + (DIRTY if _git("status", "--porcelain") else "")


def _git(*args: str) -> str:
    """``git -C REPO_ROOT *args``'s output, or '' where git is missing or fails."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""

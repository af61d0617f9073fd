"""Loading torch files so that no checkpoint can execute code, whoever wrote it.

``torch.load`` unpickles: with ``weights_only=False`` a file can name any Python callable and
have it called (a ``__reduce__`` payload runs a shell command). Every torch file mosaic-hpc
reads therefore goes through the restricted unpickler (``weights_only=True``), which builds only
tensors, plain containers and the classes allow-listed by name. DeepSpeed reads its own
checkpoint files with ``weights_only=False`` in a dozen places (engine, ZeRO stages, universal
conversion, ``zero_to_fp32``); :func:`restricted_loading` makes every ``torch.load`` in the
process restricted while DeepSpeed runs (torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, which wins
over an explicit ``weights_only=False``), so those calls cannot execute code either.

A file that fails is a :class:`CheckpointError` naming the file: unsafe content ("names the
Python object os.system, which a checkpoint must not hold") or an unreadable file (truncated,
corrupt, not a torch file). The message never suggests ``weights_only=False``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

FORCE_SAFE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
SafeGlobals = Sequence[type]
# torch's message names the offending global as "GLOBAL module.name" or "global module.name".
_GLOBAL_RE = re.compile(r"(?:GLOBAL|global) ([\w.]+)")
_TORCH_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, unsafe or unusable. The message names the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _restricted_refusal(err: Exception) -> str | None:
    """The refusal of torch's restricted unpickler in our words, or None for other errors."""
    text = str(err)
    if "Weights only load failed" not in text:
        return None
    found = _GLOBAL_RE.search(text)
    if found:
        return (
            f"refused: it names the Python object {found.group(1)}, which a checkpoint must not hold (only "
            "tensors and plain data are loaded, so that no file can execute code); it was not written by "
            "mosaic-hpc, or has been tampered with"
        )
    # torch's own sentences around the reason suggest weights_only=False: keep only the reason.
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    detail = next((p for p in parts if not p.startswith(_TORCH_BOILERPLATE)), "unknown reason")
    return f"refused: not a plain torch file of tensors and data (corrupt, or foreign content: {detail[:150]})"


def safe_torch_load(
    path: Path | str, map_location: Any = "cpu", safe_globals: SafeGlobals = (), mmap: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)`` with ``safe_globals`` allowed, errors naming the file.

    Args:
        path: the torch file.
        map_location: as for ``torch.load``.
        safe_globals: classes the restricted unpickler may build besides tensors and containers
            (DeepSpeed's optimizer states need three; see ``ds_checkpoint``).
        mmap: map tensor storages instead of reading them (verifying the pickle of a large
            optimizer shard then costs almost no I/O); ignored for legacy non-zip files.

    Raises:
        CheckpointError: the file is missing, unsafe, truncated or otherwise unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "missing")
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        reason = _restricted_refusal(err)
        if reason is None:
            detail = " ".join(str(err).split()).split(". ")[0][:200]
            reason = f"cannot be read: truncated or corrupt ({type(err).__name__}: {detail})"
        raise CheckpointError(path, reason) from None


@contextlib.contextmanager
def restricted_loading(safe_globals: SafeGlobals = ()) -> Iterator[None]:
    """Every ``torch.load`` inside the block is restricted (``weights_only=True``), whatever it asks for.

    For third-party loaders (DeepSpeed) that call ``torch.load(..., weights_only=False)``
    themselves. The environment variable is read by torch at every call; the previous values are
    restored on exit. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is lifted for the block (torch refuses
    both at once, and ours must win).
    """
    saved = {k: os.environ.get(k) for k in (FORCE_SAFE, FORCE_UNSAFE)}
    os.environ[FORCE_SAFE] = "1"
    os.environ.pop(FORCE_UNSAFE, None)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

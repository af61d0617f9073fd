"""On-disk cache of the expensive one-time tables (rebinned SSP grids, filter matrices, HMF, IGM).

Building the tables reads 270 MB of FITS grids and takes seconds; a small test catalog must
not pay that every time. Each table is a ``.npz`` file named by a hash of everything it depends
on (the recipe, the input files' sizes and mtimes, the library versions), written to a temporary
name and renamed, so concurrent ranks or test processes never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$MOSAIC_CACHE_DIR`` or ``~/.cache/mosaic-hpc``."""
    env = os.environ.get("MOSAIC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mosaic-hpc"


def file_fingerprint(path: Path) -> str:
    """Name, size and mtime: enough to notice a reinstalled grid without hashing 270 MB."""
    st = Path(path).stat()
    return f"{Path(path).name}:{st.st_size}:{int(st.st_mtime)}"


def cached_arrays(name: str, key: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load ``name``'s arrays for ``key`` from the cache, or build and store them atomically.

    Args:
        name: table name, the prefix of the cache file.
        key: JSON-serialisable description of every input of ``build`` (the source file that
            defines ``build`` is added automatically).
        build: computes the arrays when the cache misses.

    Returns:
        The arrays, keyed as ``build`` returned them.
    """
    # the builder's source file is part of the key: a code change can never reuse a stale table
    source = hashlib.sha256(Path(build.__code__.co_filename).read_bytes()).hexdigest()
    full_key = {"key": key, "source": source}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)  # corrupt (e.g. disk full during an old write): rebuild
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a shared cache should follow the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays

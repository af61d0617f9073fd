"""Checkpoint integrity: a manifest of checksums written with every checkpoint, checked on load.

A checkpoint is trusted only after three checks, shared by both engines and by prediction:

1. every file the manifest lists is there with its size and SHA-256 (a truncated copy, a flipped
   byte or a half-synced file is found before anything is loaded from it);
2. every torch file passes the restricted unpickler (:mod:`.safe_load`), so none can execute
   code when the engine loads it;
3. the consolidated weights (``model.pt``) are finite: a diverged run's NaN weights are refused,
   not resumed or used for prediction.

``manifest.json`` lists every file of the checkpoint directory except itself. Writing it reads
each file once, and the same pass ``fsync``s it, so the checksums describe bytes that are on
disk before the directory is renamed into place. Checkpoints written before manifests existed
are checked by 2 and 3 only, with a warning.

The work can be split over ranks (``share=(rank, world_size)``): rank r checks files r, r + W,
..., so a resume reads the checkpoint once in total, not once per rank; the caller combines the
verdicts (:meth:`CheckpointManager.verify`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from .safe_load import CheckpointError, SafeGlobals, safe_torch_load

log = logging.getLogger("mosaic_hpc.train")

MANIFEST = "manifest.json"
WEIGHTS = "model.pt"
# What prediction reads from a checkpoint (the optimizer states are never opened for it).
INFERENCE_FILES = (WEIGHTS, "config.yaml", "schema.json", "normalization.json")
_CHUNK = 8 << 20  # bytes per read while hashing: bounded memory for multi-GB optimizer shards


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (POSIX: the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write, fsync, rename over ``path``, fsync the directory: old or new content, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _digest(path: Path, sync: bool = False) -> str:
    """SHA-256 of a file, read in chunks; with ``sync`` the file is fsynced in the same pass."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        if sync:
            os.fsync(f.fileno())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file (hex), for formats outside a checkpoint that record their own digests."""
    return _digest(path)


def _files(ckpt_dir: Path) -> list[str]:
    """Regular files below ``ckpt_dir`` (relative, sorted), the manifest excluded."""
    return sorted(p.relative_to(ckpt_dir).as_posix() for p in ckpt_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(ckpt_dir: Path) -> Path:
    """Checksum and fsync every file of ``ckpt_dir``, then write and fsync ``manifest.json``."""
    entries = {}
    for name in _files(ckpt_dir):
        path = ckpt_dir / name
        entries[name] = {"size": path.stat().st_size, "sha256": _digest(path, sync=True)}
    path = ckpt_dir / MANIFEST
    with open(path, "w") as f:
        json.dump({"version": 1, "files": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(ckpt_dir)
    return path


def read_manifest(ckpt_dir: Path) -> dict[str, dict] | None:
    """The manifest's file entries, or None for a checkpoint written before manifests."""
    path = ckpt_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(path, f"unreadable manifest ({err})") from None
    return files


def _check_listed(ckpt_dir: Path, name: str, entry: dict) -> None:
    path = ckpt_dir / name
    if not path.is_file():
        raise CheckpointError(path, "missing (listed in the checkpoint's manifest)")
    size = path.stat().st_size
    if size != entry.get("size"):
        raise CheckpointError(path, f"has {size} bytes, the manifest says {entry.get('size')}: truncated or replaced")
    if _digest(path) != entry.get("sha256"):
        raise CheckpointError(path, "SHA-256 differs from the manifest: the file is corrupt (flipped bytes)")


def check_weights_finite(path: Path) -> None:
    """Refuse weights holding NaN or inf (a diverged run), naming how many tensors are affected."""
    state = safe_torch_load(path)
    tensors = [t for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    bad = sum(not bool(torch.isfinite(t).all()) for t in tensors)
    if bad:
        raise CheckpointError(
            path, f"{bad} of {len(tensors)} weight tensors hold NaN or inf (training had diverged when it was saved)"
        )


def verify_checkpoint(
    ckpt_dir: Path,
    files: Iterable[str] | None = None,
    safe_globals: SafeGlobals = (),
    share: tuple[int, int] = (0, 1),
) -> None:
    """Run the three checks of the module docstring on ``ckpt_dir``.

    Args:
        ckpt_dir: the checkpoint directory.
        files: only these files (prediction needs four); default every file of the checkpoint.
        safe_globals: classes the engine's torch files legitimately hold (DeepSpeed's states).
        share: ``(rank, world_size)``: check only this rank's share of the files.

    Raises:
        CheckpointError: the first problem found, naming the file.
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir)
    names = sorted(files) if files is not None else sorted(set(_files(ckpt_dir)) | set(manifest or {}))
    rank, world = share
    if manifest is None and rank == 0:
        log.warning("%s has no %s (an older checkpoint): its checksums cannot be verified", ckpt_dir, MANIFEST)
    for name in names[rank::world]:
        try:
            _verify_file(ckpt_dir, name, manifest, safe_globals)
        except OSError as err:  # unreadable (permissions, I/O error): a verdict, not a traceback
            raise CheckpointError(ckpt_dir / name, f"cannot be read ({err.strerror or err})") from None


def _verify_file(ckpt_dir: Path, name: str, manifest: dict[str, dict] | None, safe_globals: SafeGlobals) -> None:
    """The checks of one file: listed and intact (with a manifest), safe to unpickle, finite weights."""
    if manifest is not None:
        if name not in manifest:
            raise CheckpointError(ckpt_dir / name, f"not listed in {MANIFEST}: added after the checkpoint was written")
        _check_listed(ckpt_dir, name, manifest[name])
    elif not (ckpt_dir / name).is_file():
        raise CheckpointError(ckpt_dir / name, "missing")
    if name.endswith(".pt"):
        safe_torch_load(ckpt_dir / name, safe_globals=safe_globals, mmap=True)
    if name == WEIGHTS:
        check_weights_finite(ckpt_dir / name)

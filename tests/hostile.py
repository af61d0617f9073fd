"""What the hostile-input tests (tests/*/test_hostile_*.py) do to files, in one place.

Each helper damages or forges a file the way a careless or hostile user would: a torch file
with a code-running payload, flipped or cut-off bytes, a catalog holding values no galaxy has.
The tests then run the real commands on them (docs/hardening.md lists every case).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch

from mosaic_hpc.data.catalog import Catalog, CatalogWriter, default_norm_modes, stats_from_running


class Payload:
    """Unpickling this object runs ``touch <marker>``: the proof that a loader executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_payload(torch_file: Path, marker: Path) -> None:
    """Add a code-running object to a dict saved by torch (a tampered checkpoint file)."""
    state = torch.load(torch_file, map_location="cpu", weights_only=False)  # our own file, just written
    state["__payload__"] = Payload(marker)
    torch.save(state, torch_file)


def flip_byte(path: Path, offset_fraction: float = 0.7) -> None:
    """Invert one byte well inside the file (for a torch zip: inside a tensor's data)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset_fraction)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep_fraction: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep_fraction))


def catalog_with(src_dir: Path, dest_dir: Path, split: str, modality: str, rows, values) -> Path:
    """A copy of a catalog whose ``split`` file holds ``values`` in ``rows`` of ``modality``.

    The modalities of the copy are stored without checksums (``fletcher32``), like files from
    other tools, so the bad values reach the reader instead of failing the HDF5 read.
    """
    shutil.copytree(src_dir, dest_dir)
    path = dest_dir / f"{split}.h5"
    path.unlink()
    # locking=False as the catalog reader opens it: a Catalog of src still open in this process would clash
    with h5py.File(src_dir / f"{split}.h5", "r", locking=False) as src, h5py.File(path, "w") as dst:
        dst.attrs.update(src.attrs)
        for group in ("axes", "stats"):
            src.copy(src[group], dst, name=group)
        for name, ds in src["modalities"].items():
            data = ds[()]
            if name == modality:
                data[rows] = values
            new = dst.create_dataset(f"modalities/{name}", data=data)
            new.attrs.update(ds.attrs)
    return dest_dir


def write_inputs(path: Path, **modalities: np.ndarray) -> Path:
    """A predict input file: /modalities/<name> for each keyword."""
    with h5py.File(path, "w") as f:
        for name, values in modalities.items():
            f[f"modalities/{name}"] = np.asarray(values, np.float32)
    return path


def shifted_catalog(src_dir: Path, dest_dir: Path, modality: str, shift: float) -> Path:
    """The same catalog with ``modality`` shifted (another catalog: other statistics, same schema)."""
    dest_dir.mkdir(parents=True)
    stats = None
    for split in ("train", "test"):
        cat = Catalog.open(src_dir, split)
        rows = cat.read_all()
        rows[modality] = rows[modality] + shift
        with CatalogWriter(dest_dir / f"{split}.h5", cat.schema) as w:
            w.append(rows)
            if stats is None:
                stats = stats_from_running(w.running, default_norm_modes(cat.schema))
            w.close(stats)
    return dest_dir


def forge_manifest(ckpt_dir: Path) -> None:
    """Rewrite a checkpoint's manifest.json to match its files, as an attacker who edits a file can.

    Checksums find damage, not malice: a forged checkpoint must still fail the restricted
    unpickler or the finite-weights check.
    """
    files = {}
    for p in sorted(ckpt_dir.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[p.relative_to(ckpt_dir).as_posix()] = {
                "size": p.stat().st_size,
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            }
    (ckpt_dir / "manifest.json").write_text(json.dumps({"version": 1, "files": files}))

"""The default mock catalog (what ``make run`` builds) must not change under mock-variant work.

The reference (``tests/data/mock_default_reference.json``) was written by
``python tests/unit/test_mock_default_unchanged.py --write`` at commit 276c68f, before the
``survey`` variant existed. Where the BLAS kernel is the one the reference was made with
(OpenBLAS core type, single-threaded), every dataset must be bit-identical (sha256 of its bytes);
on another kernel float32 matrix products round differently, so there the per-column means and
standard deviations must agree to 1e-5 (a change of recipe moves them by far more).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "mock_default_reference.json"
N_GALAXIES, SEED = 200, 3


def _blas_architecture() -> str:
    from threadpoolctl import threadpool_info

    return ";".join(sorted(str(i.get("architecture")) for i in threadpool_info() if i.get("user_api") == "blas"))


def summarise(out_dir: Path) -> dict:
    """sha256, column means and stds of every dataset, plus the recipe attributes, of both splits."""
    from threadpoolctl import threadpool_limits

    from mosaic_hpc.data.mock import make_mock_catalog

    with threadpool_limits(1):  # threaded BLAS reductions are not bit-reproducible
        # val_fraction=0: the reference predates the validation split; the physics recipe is what is guarded
        make_mock_catalog(
            out_dir, N_GALAXIES, seed=SEED, noise="lsst10", val_fraction=0.0, overwrite=True, progress=False
        )
    summary: dict = {"blas_architecture": _blas_architecture(), "datasets": {}, "attrs": {}}
    for split in ("train", "test"):
        with h5py.File(out_dir / f"{split}.h5", "r") as f:
            for key in ("generator_version", "mock_config"):
                summary["attrs"][f"{split}/{key}"] = str(f.attrs[key])

            def visit(name: str, obj, split: str = split) -> None:
                if isinstance(obj, h5py.Dataset):
                    a = np.ascontiguousarray(obj[()])
                    entry = {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape)}
                    if a.dtype.kind == "f" and a.ndim == 2:
                        with warnings.catch_warnings():  # all-NaN columns (SFH bins after t_obs)
                            warnings.simplefilter("ignore", RuntimeWarning)
                            entry["mean"] = np.nanmean(a.astype(np.float64), axis=0).tolist()
                            entry["std"] = np.nanstd(a.astype(np.float64), axis=0).tolist()
                    summary["datasets"][f"{split}/{name}"] = entry

            f.visititems(visit)
    return summary


def test_default_mock_is_unchanged(tmp_path: Path) -> None:
    ref = json.loads(REFERENCE.read_text())
    now = summarise(tmp_path / "mock")
    assert now["attrs"] == ref["attrs"], "the default recipe (MockConfig / generator version) changed"
    assert sorted(now["datasets"]) == sorted(ref["datasets"])
    exact = now["blas_architecture"] == ref["blas_architecture"]
    for name, r in ref["datasets"].items():
        n = now["datasets"][name]
        assert n["shape"] == r["shape"], name
        if exact:
            assert n["sha256"] == r["sha256"], f"{name}: default mock output changed (same BLAS kernel)"
        elif "mean" in r:
            np.testing.assert_allclose(n["mean"], r["mean"], rtol=1e-5, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(n["std"], r["std"], rtol=1e-4, atol=1e-5, err_msg=name)
    if not exact:
        pytest.skip(f"BLAS kernel {now['blas_architecture']} != {ref['blas_architecture']}: checked to 1e-5 only")


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.write_text(json.dumps(summarise(Path(tmp) / "mock"), indent=0) + "\n")
    print(f"wrote {REFERENCE}")

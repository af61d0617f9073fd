"""A small analytic catalog with known structure, for fast core tests.

Not a mock of real galaxies (that is mosaic_hpc.data.mock): every vector is a smooth,
deterministic function of the scalars plus small noise, so a model that learns anything beats
predicting the mean, and lengths differ from the paper's to prove nothing is hard-coded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mosaic_hpc.data.catalog import CatalogWriter, default_norm_modes, stats_from_running
from mosaic_hpc.schema import CatalogSchema, ModalitySpec

LENGTHS = {"lsst": 6, "spherex": 12, "sfh": 20, "sed": 40}


def toy_schema() -> CatalogSchema:
    return CatalogSchema(
        (
            ModalitySpec(
                "scalars", "scalars", 3, "mixed", columns=("redshift", "log10_halo_mass", "log10_stellar_mass")
            ),
            ModalitySpec(
                "lsst",
                "vector",
                6,
                "AB mag",
                columns=tuple("ugrizy"),
                axis=(3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0),
                axis_quantity="wavelength",
                axis_unit="Angstrom",
            ),
            ModalitySpec(
                "spherex",
                "vector",
                12,
                "AB mag",
                axis=tuple(np.linspace(7500, 50000, 12)),
                axis_quantity="wavelength",
                axis_unit="Angstrom",
            ),
            ModalitySpec(
                "sfh",
                "vector",
                20,
                "log10 Msun/yr",
                axis=tuple(np.linspace(0.35, 13.45, 20)),
                axis_quantity="cosmic_time",
                axis_unit="Gyr",
            ),
            ModalitySpec(
                "sed",
                "vector",
                40,
                "log10 Jy",
                axis=tuple(np.geomspace(1000, 50000, 40)),
                axis_quantity="wavelength",
                axis_unit="Angstrom",
            ),
        )
    )


def toy_rows(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    z = rng.uniform(0.05, 3.0, n)
    mh = rng.uniform(11.0, 14.0, n)
    ms = mh - 1.8 + 0.3 * np.tanh(mh - 12.0) + 0.1 * rng.normal(size=n)
    schema = toy_schema()
    wl = np.asarray(schema["lsst"].axis)
    lsst = 25.0 - 2.5 * (ms - 10.0)[:, None] + 1.2 * np.log1p(z)[:, None] * (wl[None, :] / 5000.0) ** -1.0
    wl_s = np.asarray(schema["spherex"].axis)
    spherex = 24.0 - 2.5 * (ms - 10.0)[:, None] + 0.8 * z[:, None] * np.log(wl_s / 7500.0)[None, :]
    t = np.asarray(schema["sfh"].axis)
    t_obs = 13.8 - 10.0 * z / (1.0 + z)  # crude cosmic time of observation, Gyr
    tau = 1.0 + 0.5 * (13.0 - mh)
    sfh = (ms - 9.0)[:, None] - ((t[None, :] - 3.0) / np.maximum(tau, 0.3)[:, None]) ** 2 / 10.0
    sfh[t[None, :] > t_obs[:, None]] = np.nan  # undefined after the galaxy's own time
    wl_sed = np.log10(np.asarray(schema["sed"].axis))
    sed = (ms - 14.0)[:, None] + 0.5 * (wl_sed[None, :] - 3.5) * (1.0 + 0.3 * (mh - 12.5))[:, None]
    noise = lambda a: a + 0.02 * rng.normal(size=a.shape)
    return {
        "scalars": np.stack([z, mh, ms], axis=1),
        "lsst": noise(lsst),
        "spherex": noise(spherex),
        "sfh": noise(sfh),
        "sed": noise(sed),
    }


def write_toy_catalog(out_dir: Path, n_train: int = 2048, n_test: int = 512, seed: int = 0, n_val: int = 0) -> Path:
    """train.h5 and test.h5 in ``out_dir`` (and val.h5 with ``n_val``), all with the training statistics.

    Without ``n_val`` the layout is that of catalogs written before the validation split existed.
    """
    rng = np.random.default_rng(seed)
    schema = toy_schema()
    train = CatalogWriter(out_dir / "train.h5", schema, {"source": "toy", "seed": seed})
    train.append(toy_rows(n_train, rng))
    stats = stats_from_running(train.running, default_norm_modes(schema))
    train.close(stats)
    for split, n in (("test", n_test), ("val", n_val)):
        if n:
            w = CatalogWriter(out_dir / f"{split}.h5", schema, {"source": "toy", "seed": seed})
            w.append(toy_rows(n, rng))
            w.close(stats)
    return out_dir

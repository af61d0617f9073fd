"""Figures of docs/mock_catalog.md: the relations put into the mock catalog, recovered from a file.

Reads a catalog (``--data DIR``) or generates a noise-free one of ``--n-galaxies`` in a temporary
directory, and writes ``docs/figures/mock_*.png``. Every panel is computed from the catalog file
alone (plus the cosmology tables and the input relations for reference curves), exactly as the
validation tests in tests/unit/test_mock_catalog.py do.

Example:
  python docs/make_mock_figures.py --n-galaxies 20000 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mosaic_hpc.data.catalog import Catalog  # noqa: E402
from mosaic_hpc.data.mock import make_mock_catalog  # noqa: E402
from mosaic_hpc.data.mock.config import MockConfig  # noqa: E402
from mosaic_hpc.data.mock.pipeline import MockContext  # noqa: E402
from mosaic_hpc.data.mock.relations import behroozi13_log_mstar, quenched_fraction  # noqa: E402


def binned_median(x: np.ndarray, y: np.ndarray, edges: np.ndarray, min_count: int = 10):
    """Bin centres, median, 16th and 84th percentiles of y in bins of x (bins with few points dropped)."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (x >= lo) & (x < hi) & np.isfinite(y)
        if sel.sum() >= min_count:
            out.append((0.5 * (lo + hi), *np.percentile(y[sel], [50, 16, 84])))
    return np.array(out).T if out else np.empty((4, 0))


def last_log_ssfr(rows: dict[str, np.ndarray]) -> np.ndarray:
    """log10 sSFR (1/yr) in each galaxy's latest SFH bin."""
    last = np.array([r[np.isfinite(r)][-1] for r in rows["sfh"]])
    return last - rows["scalars"][:, 2]


def plot_all(rows: dict[str, np.ndarray], ctx: MockContext, out_dir: Path, sed_wave: np.ndarray) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z, log_mh, log_ms = rows["scalars"].T
    lsst = rows["lsst"]
    quenched = last_log_ssfr(rows) < -11.0
    written = []

    def save(fig, name: str) -> None:
        path = out_dir / f"mock_{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # 1. stellar-to-halo mass relation
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    grid = np.linspace(10.5, 15.0, 100)
    for (zlo, zhi), colour in zip([(0.0, 0.5), (0.9, 1.3), (1.8, 3.0)], ["C0", "C1", "C3"], strict=True):
        sel = (z >= zlo) & (z < zhi)
        ax.scatter(log_mh[sel], log_ms[sel], s=1, alpha=0.15, color=colour)
        c, med, _, _ = binned_median(log_mh[sel], log_ms[sel], np.arange(10.5, 15.01, 0.25))
        ax.plot(c, med, "o", color=colour, ms=4, label=f"catalog median, {zlo} < z < {zhi}")
        ax.plot(grid, behroozi13_log_mstar(grid, np.full_like(grid, 0.5 * (zlo + zhi))), "-", color=colour)
    ax.set(xlabel="log10 M200m [Msun]", ylabel="log10 M* [Msun]", title="SHMR: catalog vs Behroozi+13 (lines)")
    ax.legend(fontsize=7)
    save(fig, "shmr")

    # 2. quenched fraction vs stellar mass
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    grid = np.linspace(8.0, 12.0, 100)
    edges = np.arange(8.0, 12.01, 0.25)
    for (zlo, zhi), colour in zip([(0.0, 0.5), (0.5, 1.0), (1.0, 2.0)], ["C0", "C1", "C3"], strict=True):
        sel = (z >= zlo) & (z < zhi)
        c, frac = [], []
        for lo, hi in itertools.pairwise(edges):
            m = sel & (log_ms >= lo) & (log_ms < hi)
            if m.sum() >= 10:
                c.append(0.5 * (lo + hi))
                frac.append(quenched[m].mean())
        ax.plot(c, frac, "o", color=colour, ms=4, label=f"catalog (sSFR < 1e-11/yr), {zlo} < z < {zhi}")
        ax.plot(grid, quenched_fraction(grid, np.full_like(grid, 0.5 * (zlo + zhi))), "-", color=colour)
    ax.set(xlabel="log10 M* [Msun]", ylabel="quenched fraction", title="Quenched fraction (lines: input)")
    ax.legend(fontsize=7)
    save(fig, "quenched_fraction")

    # 3. observed colours vs redshift
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    zedges = np.arange(0.0, 3.01, 0.1)
    for ax, (a, b, label) in zip(axes, [(0, 1, "u - g"), (1, 2, "g - r")], strict=True):
        colour = lsst[:, a] - lsst[:, b]
        ax.scatter(z, colour, s=1, alpha=0.1, color="0.5")
        for sel, name, c in [(np.ones_like(quenched), "all", "C0"), (quenched, "quenched", "C3")]:
            zc, med, p16, p84 = binned_median(z[sel], colour[sel], zedges)
            ax.plot(zc, med, "-", color=c, label=f"{name}: median")
            ax.fill_between(zc, p16, p84, color=c, alpha=0.2)
        ax.set(xlabel="redshift", ylabel=f"{label} [AB mag]", ylim=(-0.5, 3.5))
        ax.legend(fontsize=7)
    fig.suptitle("LSST colours vs redshift (4000 A break through g/r at z~0.4; Lyman break in u at z>2.5)")
    save(fig, "colours")

    # 4. redshift and magnitude distributions
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
    axes[0].hist(z, bins=60, color="C0")
    axes[0].set(xlabel="redshift", ylabel="galaxies")
    axes[1].hist(lsst[:, 3], bins=60, color="C1")
    axes[1].set(xlabel="i [AB mag]", title="selection i < 25.3")
    axes[2].hist(log_ms, bins=60, color="C2")
    axes[2].set(xlabel="log10 M* [Msun]")
    save(fig, "distributions")

    # 5. example SEDs and SFHs
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    t_axis = 0.5 * (ctx.sfh_edges[1:] + ctx.sfh_edges[:-1])
    examples = [int(np.flatnonzero(quenched & (z < 0.6))[0])] if (quenched & (z < 0.6)).any() else []
    examples += [int(i) for i in np.flatnonzero(~quenched)[:: max(1, (~quenched).sum() // 3)][:3]]
    for k in examples:
        tag = f"z={z[k]:.2f}, logM*={log_ms[k]:.1f}" + (" (quenched)" if quenched[k] else "")
        axes[0].plot(sed_wave, rows["sed"][k], lw=0.8, label=tag)
        axes[1].plot(t_axis, rows["sfh"][k], lw=1.0, label=tag)
    axes[0].set(xscale="log", xlabel="rest wavelength [A]", ylabel="log10 f_nu [Jy] at 10 pc", title="SED (921 bins)")
    axes[1].set(xlabel="cosmic time [Gyr]", ylabel="log10 SFR [Msun/yr]", title="SFH (117 bins, NaN after t(z))")
    axes[0].legend(fontsize=7)
    save(fig, "examples")

    # 6. SFH integral x surviving fraction vs stored stellar mass
    t_obs = ctx.cosmo.age(z)
    edges = ctx.sfh_edges
    covered = np.clip(t_obs[:, None] - edges[None, :-1], 0.0, np.diff(edges)[None, :])
    age_yr = (t_obs[:, None] - edges[None, :-1] - 0.5 * covered) * 1e9
    bin_age = 0.5 * (ctx.ssp.edges_steps[1:] + ctx.ssp.edges_steps[:-1]) * ctx.cfg.sfh_step_myr * 1e6
    surviving = np.interp(age_yr, bin_age, ctx.ssp.surviving[int(np.argmin(np.abs(ctx.ssp.log_z)))])
    sfr = np.where(np.isnan(rows["sfh"]), 0.0, 10.0 ** rows["sfh"])
    resid = np.log10((sfr * covered * 1e9 * surviving).sum(axis=1)) - log_ms
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(resid, bins=80, color="C4")
    ax.set(
        xlabel="log10(sum SFR dt f_surv) - log10 M*  [dex]",
        ylabel="galaxies",
        title=f"SFH integral check: median {np.median(resid):+.3f} dex",
    )
    save(fig, "sfh_integral")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="catalog directory (default: generate one)")
    parser.add_argument("--n-galaxies", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = MockContext.build(MockConfig())
    with tempfile.TemporaryDirectory(prefix="mock-figures-") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "cat"
            make_mock_catalog(data, args.n_galaxies, seed=args.seed, noise="none", progress=False)
        catalog = Catalog.open(data, "train")
        rows = {k: v.astype(np.float64) for k, v in catalog.read_all().items()}
        sed_wave = catalog.schema["sed"].axis_array()
        catalog.close()
    for path in plot_all(rows, ctx, args.out, sed_wave):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures of docs/mock_vs_dc2.md: colours vs redshift and magnitude/redshift distributions, mock beside DC2.

The DC2 side is the RAIL cosmoDC2 training file (pz-rail-base, as imported by
``benchmarks/photoz_dc2.py``). Each mock recipe (``default``, ``survey``) is generated noise-free
and observed the way the DC2 benchmark observes it for pretraining (``photoz_dc2.mock_as_dc2``: the
depths fitted to DC2's magnitude errors, the recipe's noise model), so the panels show what the
pretrained model is given next to what it is asked about. Writes ``docs/figures/mock_vs_dc2_*.png``
and prints the medians per redshift bin.

Example:
  python docs/make_mock_vs_dc2_figures.py --n-galaxies 20000 --seed 0
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mosaic_hpc.data.catalog import Catalog  # noqa: E402
from mosaic_hpc.data.importer import import_catalog  # noqa: E402
from mosaic_hpc.data.mock import make_mock_catalog  # noqa: E402
from mosaic_hpc.evaluation import photoz  # noqa: E402

sys.path.insert(0, str(REPO / "docs"))
from make_mock_figures import binned_median  # noqa: E402

COLOURS = ("u-g", "g-r", "r-i", "i-z", "z-y")
Z_EDGES = np.arange(0.0, 3.01, 0.2)
STYLE = {"DC2": ("k", "-"), "default": ("tab:blue", "--"), "survey": ("tab:red", "-.")}


def _benchmark():
    spec = importlib.util.spec_from_file_location("photoz_dc2", REPO / "benchmarks" / "photoz_dc2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def binned(x: np.ndarray, y: np.ndarray, edges: np.ndarray = Z_EDGES) -> np.ndarray:
    """[4, n] bin centre, median, 16th and 84th percentile of y in bins of x (bins under 20 galaxies dropped)."""
    return binned_median(x, y, edges, min_count=20)


def load(work: Path, n_galaxies: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(redshift, observed ugrizy) of DC2 and of each mock recipe observed like DC2 (NaN = non-detection)."""
    bench = _benchmark()
    train_path, test_path = bench.dc2_paths()
    import_catalog(train_path, bench.MAPPING, work / "dc2", input_test=test_path, overwrite=True, show_progress=False)
    dc2 = Catalog.open(work / "dc2", "train").read_all()
    m5 = photoz.fit_depths(dc2["lsst"].astype(np.float64), dc2["lsst_err"].astype(np.float64))
    fill = photoz.NonDetectionFill.from_depths(m5)
    schema = bench.model_schema(Catalog.open(work / "dc2", "train").schema)
    out = {"DC2": (dc2["scalars"][:, 0], dc2["lsst"].astype(np.float64))}
    for variant in ("default", "survey"):
        mock_dir = work / f"mock_{variant}"
        make_mock_catalog(
            mock_dir, n_galaxies, seed=seed, noise="none", overwrite=True, progress=False, variant=variant
        )
        rows = bench.mock_as_dc2(mock_dir, schema, m5, fill, seed, variant)
        mag = rows["lsst"].astype(np.float64)
        mag[np.isclose(mag, fill.mag[None, :])] = np.nan  # back to non-detections, as DC2 is shown
        out[variant] = (rows["scalars"][:, 0], mag)
    return out


def plot(data: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(COLOURS), figsize=(4 * len(COLOURS), 3.6), sharex=True)
    for k, (ax, name) in enumerate(zip(axes, COLOURS, strict=True)):
        for label, (z, mag) in data.items():
            c, ls = STYLE[label]
            x, med, lo, hi = binned(z, mag[:, k] - mag[:, k + 1])
            ax.plot(x, med, color=c, ls=ls, label=label)
            ax.fill_between(x, lo, hi, color=c, alpha=0.12)
        ax.set(xlabel="redshift", ylabel=name, title=f"{name}: median, 16-84%")
    axes[0].legend()
    fig.tight_layout()
    colours = out_dir / "mock_vs_dc2_colours.png"
    fig.savefig(colours, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, (z, mag) in data.items():
        c, ls = STYLE[label]
        kw = {"histtype": "step", "density": True, "color": c, "ls": ls, "label": label}
        axes[0].hist(z, bins=np.arange(0, 3.05, 0.05), **kw)
        axes[1].hist(mag[:, 3][np.isfinite(mag[:, 3])], bins=np.arange(17, 25.5, 0.1), **kw)
        axes[2].hist(mag[:, 0][np.isfinite(mag[:, 0])], bins=np.arange(18, 29, 0.1), **kw)
    axes[0].set(xlabel="redshift", ylabel="density", title="n(z)")
    axes[1].set(xlabel="i (AB)", title="i-band magnitudes (selection i < 25.3)")
    axes[2].set(xlabel="u (AB)", title="u-band magnitudes (detections)")
    axes[0].legend()
    fig.tight_layout()
    dists = out_dir / "mock_vs_dc2_distributions.png"
    fig.savefig(dists, dpi=110)
    plt.close(fig)
    return [colours, dists]


def summary(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Median colours per redshift bin of every sample, a markdown table per colour."""
    lines = []
    for k, name in enumerate(COLOURS):
        lines += [f"{name}:", "", "| z | " + " | ".join(data) + " |", "|---|" + "---|" * len(data)]
        per = {
            label: binned(z, mag[:, k] - mag[:, k + 1], np.arange(0.0, 3.01, 0.5)) for label, (z, mag) in data.items()
        }
        for centre in per["DC2"][0]:
            cells = []
            for label in data:
                hit = np.flatnonzero(np.isclose(per[label][0], centre))
                cells.append(f"{per[label][1][hit[0]]:+.2f}" if hit.size else "-")
            lines.append(f"| {centre - 0.25:.1f}-{centre + 0.25:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-galaxies", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = load(Path(tmp), args.n_galaxies, args.seed)
    for path in plot(data, args.out):
        print(f"wrote {path}")
    print(summary(data))


if __name__ == "__main__":
    main()

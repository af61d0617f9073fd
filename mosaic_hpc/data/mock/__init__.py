"""Mock galaxy catalog generator: halos to spectra and photometry, in numpy, chunked and MPI-parallel.

Modules, one job each: ``config`` (the recipe and its references), ``cache`` (one-time tables on
disk), ``halos`` (cosmology, Tinker+08 HMF sampling), ``relations`` (SHMR, quenching, metallicity,
dust), ``sfh`` (fine SFHs, stored 117-bin SFH), ``ssp`` (BC03 + nebular grids, age bins,
rebinning), ``spectra`` (synthesis, Calzetti dust, Inoue+14 IGM), ``photometry`` (LSST and SPHEREx
filters, noise, SED), ``pipeline`` (one chunk: halos to catalog rows, the magnitude pre-cut),
``generator`` (chunks, streams, splits, writers, MPI). See docs/mock_catalog.md.
"""

from .generator import make_mock_catalog

__all__ = ["make_mock_catalog"]

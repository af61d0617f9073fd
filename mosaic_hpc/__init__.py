"""mosaic-hpc: multi-modal foundation models of galaxies (MOSAIC) trained on HPC systems.

``load_run(path).predict({"lsst": mags})`` is the one-line entry point for users; it is imported
lazily so ``import mosaic_hpc`` stays cheap (no torch) for catalog-only work.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_run"]


def load_run(path):
    """Load a trained run directory for prediction. See :class:`mosaic_hpc.evaluation.predictor.Predictor`."""
    from .evaluation.predictor import load_run as _load_run

    return _load_run(path)

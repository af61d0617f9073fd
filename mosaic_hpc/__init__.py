"""mosaic-hpc: multi-modal foundation models of galaxies (MOSAIC) trained on HPC systems.

``load_run(path).predict({"lsst": mags})`` is the one-line entry point for users; it is imported
lazily so ``import mosaic_hpc`` stays cheap (no torch) for catalog-only work.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "from_pretrained", "load_run"]


def load_run(path):
    """Load a trained run directory for prediction. See :class:`mosaic_hpc.evaluation.predictor.Predictor`."""
    from .evaluation.predictor import load_run as _load_run

    return _load_run(path)


def from_pretrained(model_dir, device=None):
    """Load an exported model directory (``mosaic-hpc export``); the same Predictor as ``load_run``."""
    from .lifecycle.model_dir import from_pretrained as _from_pretrained

    return _from_pretrained(model_dir, device=device)

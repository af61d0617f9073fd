"""mosaic-hpc's RAIL stages, found by ``rail.stages.import_and_attach_all()`` like any ``pz-rail-*`` package.

RAIL lists the packages of its ``rail`` namespace (``pkgutil.iter_modules(rail.__path__)``) and
imports each; importing this one imports the stages, which registers them with ``RailStage``.
"""

from rail.estimation.algos.mosaic import MosaicEstimator, MosaicInformer, MosaicModelHandle

__all__ = ["MosaicEstimator", "MosaicInformer", "MosaicModelHandle"]

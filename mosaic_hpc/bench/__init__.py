"""Benchmarks behind ``mosaic-hpc bench``: each module exposes ``add_arguments`` and ``run``."""

"""Benchmarks behind ``mosaic-hpc bench`` and the helpers they share.

The benchmarks (throughput, dataloader, scaling, predict) each expose ``add_arguments`` and
``run``; the other modules do one job each (arith, presets, machine, devices, timing, synthetic,
report) and never import a benchmark (``BENCH_LAYERS`` in tests/unit/test_layering.py).
"""

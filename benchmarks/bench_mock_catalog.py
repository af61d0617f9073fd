"""Wall time and peak memory of the mock catalog generator, as JSON.

Runs the package's own ``make_mock_catalog`` (the same code as ``mosaic-hpc make-catalog``) into
a temporary directory, after one warm-up call that fills the table cache, so the number is the
steady-state cost a user pays for a catalog of that size. Under ``mpiexec -n K`` every rank
generates its shard; rank 0 reports the slowest rank's time and the largest rank's peak RSS.
Measure peak memory independently with ``/usr/bin/time -v`` around the whole command.

Example:
  /usr/bin/time -v python benchmarks/bench_mock_catalog.py --n-galaxies 20000
  /usr/bin/time -v mpiexec -n 2 python benchmarks/bench_mock_catalog.py --n-galaxies 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mosaic_hpc.data.mock import make_mock_catalog  # noqa: E402
from mosaic_hpc.data.mock.config import NOISE_MODELS  # noqa: E402
from mosaic_hpc.data.mock.generator import world_comm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-galaxies", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", choices=NOISE_MODELS, default="lsst10")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    args = parser.parse_args(argv)

    comm = world_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    with tempfile.TemporaryDirectory(prefix="bench-mock-") as tmp:
        shared = Path(comm.bcast(tmp if rank == 0 else None) if comm is not None else tmp)
        make_mock_catalog(shared / "warm", 200, seed=1, noise="none", progress=False, comm=comm)  # fills the cache
        if comm is not None:
            comm.Barrier()
        start, cpu_start = time.perf_counter(), time.process_time()
        make_mock_catalog(shared / "cat", args.n_galaxies, seed=args.seed, noise=args.noise, progress=False, comm=comm)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start  # all threads of this process: the cost without contention
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
        if comm is not None:
            comm.Barrier()  # every rank's shards are renamed into place before they are measured
        size_mb = sum(p.stat().st_size for p in (shared / "cat").rglob("*.h5")) / 2**20
        if comm is not None:
            elapsed = comm.allreduce(elapsed, op=_max_op())
            cpu = comm.allreduce(cpu)  # summed over ranks
            peak_mb = comm.allreduce(peak_mb, op=_max_op())
            comm.Barrier()
    if rank == 0:
        result = {
            "benchmark": "mock_catalog",
            "n_galaxies": args.n_galaxies,
            "noise": args.noise,
            "ranks": size,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "wall_s": round(elapsed, 2),
            "galaxies_per_s": round(args.n_galaxies / elapsed, 1),
            "cpu_s": round(cpu, 1),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "peak_rss_mb_per_rank": round(peak_mb, 1),
            "catalog_mb": round(size_mb, 1),
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        text = json.dumps(result, indent=2)
        print(text)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
    return 0


def _max_op():
    from mpi4py import MPI

    return MPI.MAX


if __name__ == "__main__":
    sys.exit(main())

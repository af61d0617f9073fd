"""Weak and strong scaling over 1..N ranks, run through the launchers; table, JSON and PNG plot.

Every point is a real training run of ``mosaic_hpc/train.py`` started by a launcher
(launchers/local.sh by default; mpiexec, deepspeed, torchrun or srun on request) with the
DeepSpeed engine of --ds-config, ``train.log_every = 1`` and no evaluation. Step time comes
from the trainer's own JSONL records (one per step, wall-clock stamped), over the steps after
--warmup; start-up (interpreter, imports, process group, engine, catalog, first step's one-off
costs) is reported apart: launch to the end of step 1, minus one steady-state step.

  weak    fixed per-rank micro-batch B: global batch N*B;  efficiency = X(N) / (N X(1)), X samples/s
  strong  fixed global batch G: per-rank G/N;              efficiency = t(1) / (N t(N)), t per step

On CPU every rank gets --threads-per-rank intra-op threads (OMP_NUM_THREADS), so N ranks use N
threads and the comparison is one of parallel efficiency, not of thread counts. Each point runs
--repeats times (interleaved over rank counts) and the median is reported with the load average.
Without --data a synthetic catalog with the paper's lengths is written once into --work-dir.

Examples:
  mosaic-hpc bench scaling --config small --ranks 1,2 --repeats 3 --out runs/bench/scaling.json
  mosaic-hpc bench scaling --config base --ranks 4,8,16 --launcher srun --device gpu --data /pscratch/catalog
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..config import resolve_config, resolve_deepspeed_config
from ..dist_env import free_port
from ..provenance import REPO_ROOT
from .arith import median, parse_int_list, strong_efficiency, weak_efficiency
from .machine import load_average, machine_info
from .presets import load_bench_config
from .report import markdown_table, write_json
from .synthetic import make_catalog

BENCHMARK = "scaling"
MODES = ("weak", "strong")
# Site scripts run inside an allocation, on its first N / ranks-per-node nodes (MOSAIC_NODES),
# with the site's modules, binding and network settings; the scheduler whose job they need.
SITE_SCRIPTS = {
    "perlmutter": ("launchers/perlmutter.sh", "SLURM_JOB_ID"),
    "polaris": ("launchers/polaris.pbs", "PBS_JOBID"),
    "swing": ("launchers/swing.pbs", "PBS_JOBID"),
}
LAUNCHERS = ("local", *SITE_SCRIPTS, "mpiexec", "deepspeed", "torchrun", "srun")
EFFICIENCY_SANE = (0.0, 1.2)  # above 1.2 is a measurement artefact (cache effects, a noisy baseline)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", default="small", help="preset name or YAML path")
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts, e.g. 1,2,4,8")
    p.add_argument("--modes", default="weak,strong", help="weak, strong or both")
    p.add_argument("--micro-batch", type=int, default=None, help="weak: per-rank micro-batch (default: config's)")
    p.add_argument("--global-batch", type=int, default=None, help="strong: global batch (default: max ranks x micro)")
    p.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=3, help="steps excluded from the step time")
    p.add_argument("--repeats", type=int, default=1, help="runs per point, interleaved; the median is reported")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS, help="how the ranks are started")
    p.add_argument("--ranks-per-node", type=int, default=4, help="site launchers: ranks (GPUs) per node")
    p.add_argument("--launcher-args", default="", help="extra arguments for the launcher (mpiexec/srun/deepspeed)")
    p.add_argument("--ds-config", default="configs/zero2.json", help="DeepSpeed JSON of the runs")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="cpu: gloo ranks; gpu: one rank per GPU")
    p.add_argument("--threads-per-rank", type=int, default=1, help="OMP_NUM_THREADS per rank on CPU (0: leave)")
    p.add_argument("--data", type=Path, default=None, help="catalog directory (default: synthetic, paper lengths)")
    p.add_argument("--rows", type=int, default=8192, help="rows of the synthetic catalog")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    p.add_argument("--timeout-s", type=float, default=900.0, help="per launch; a hung run is killed and recorded")
    p.add_argument("--work-dir", type=Path, default=Path("runs/bench/scaling"), help="run directories, catalog")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default: WORK_DIR/scaling.json)")
    p.add_argument("--plot", type=Path, default=None, help="PNG plot (default: beside the JSON)")


# ------------------------------------------------------------------------------ planning


def per_rank_batch(mode: str, n_ranks: int, micro_batch: int, global_batch: int) -> int:
    """Per-rank micro-batch of a point: B for weak scaling, G / N for strong scaling.

    Raises:
        ValueError: unknown mode, or a global batch that N ranks cannot split evenly.
    """
    if mode == "weak":
        return micro_batch
    if mode == "strong":
        if global_batch % n_ranks:
            raise ValueError(f"--global-batch {global_batch} is not divisible by {n_ranks} ranks (strong scaling)")
        return global_batch // n_ranks
    raise ValueError(f"scaling mode must be one of {MODES}, got {mode!r}")


def step_timing(records: list[dict[str, Any]], warmup: int, t_launch: float) -> dict[str, float]:
    """Steady-state step time and start-up time from the trainer's per-step JSONL records.

    Args:
        records: the ``metrics.jsonl`` lines with a training loss (one per step at log_every 1),
            each with ``step`` and ``time/unix`` (wall clock when the record was written).
        warmup: steps excluded: only the intervals ending at steps after ``warmup`` are timed.
        t_launch: wall clock just before the launcher was started.

    Returns:
        ``time/step_s``: the median interval between consecutive records (robust to a step
        preempted by another job on a shared machine); ``time/step_s_mean`` over the same window;
        ``time/startup_s``: launch to the end of step 1 minus one steady step (what a run pays
        once); ``timed_steps``.

    Raises:
        ValueError: missing records, or too few to leave a timed window after the warm-up.
    """
    train = sorted((r for r in records if "loss/total" in r), key=lambda r: r["step"])
    by_step = {int(r["step"]): float(r["time/unix"]) for r in train}
    last = max(by_step, default=0)
    if 1 not in by_step or last <= warmup or any(k not in by_step for k in range(warmup, last + 1)):
        raise ValueError(
            f"need a record for every step from {warmup} to the last, and step 1; got steps {sorted(by_step)}"
        )
    intervals = [by_step[k] - by_step[k - 1] for k in range(warmup + 1, last + 1)]
    step_s = median(intervals)
    if step_s <= 0:
        raise ValueError("non-increasing record times: cannot compute a step time")
    return {
        "time/step_s": step_s,
        "time/step_s_mean": sum(intervals) / len(intervals),
        "time/startup_s": max(0.0, by_step[1] - t_launch - step_s),
        "timed_steps": len(intervals),
    }


def efficiencies(points: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Add ``efficiency`` to each point (sorted by ranks), relative to the smallest rank count."""
    pts = sorted(points, key=lambda p: p["ranks"])
    base = pts[0]
    for p in pts:
        if mode == "weak":
            p["efficiency"] = weak_efficiency(
                base["throughput/samples_per_s"], p["throughput/samples_per_s"], p["ranks"], base["ranks"]
            )
        else:
            p["efficiency"] = strong_efficiency(base["time/step_s"], p["time/step_s"], p["ranks"], base["ranks"])
    return pts


# ------------------------------------------------------------------------------- launching


def _venv_tool(name: str) -> str:
    """A launcher binary beside this interpreter (the venv's mpiexec/deepspeed/torchrun) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ValueError(f"launcher {name!r} not found beside {sys.executable} or on PATH")
    return found


def site_layout(n_ranks: int, ranks_per_node: int) -> tuple[int, int]:
    """(nodes, ranks per node) of ``n_ranks`` ranks: one partly used node, or whole nodes.

    Raises:
        ValueError: more ranks than one node holds but not a whole number of nodes.
    """
    if ranks_per_node < 1:
        raise ValueError(f"--ranks-per-node must be >= 1, got {ranks_per_node}")
    if n_ranks <= ranks_per_node:
        return 1, n_ranks
    if n_ranks % ranks_per_node:
        raise ValueError(f"{n_ranks} ranks are not a whole number of {ranks_per_node}-rank nodes")
    return n_ranks // ranks_per_node, ranks_per_node


def launch_command(
    launcher: str, n_ranks: int, trainer_args: list[str], launcher_args: list[str], port: int, ranks_per_node: int = 4
) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that start ``n_ranks`` trainer processes with ``launcher``.

    ``local`` and the site scripts read their settings from MOSAIC_* variables (set by the
    caller; the site scripts run inside an existing allocation and use its first nodes); the
    others start ``python -m mosaic_hpc.train`` directly, and the trainer reads rank and world
    size from whatever variables that launcher sets.

    Raises:
        ValueError: unknown launcher, a site script outside its scheduler's job, or a launcher
            binary that cannot be found.
    """
    py = sys.executable
    module = [py, "-m", "mosaic_hpc.train", *trainer_args]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if launcher == "local":
        script = str(REPO_ROOT / "launchers" / "local.sh")
        return ["bash", script, "-n", str(n_ranks), *trainer_args], {"MOSAIC_MASTER_PORT": str(port)}
    if launcher in SITE_SCRIPTS:
        script, job_var = SITE_SCRIPTS[launcher]
        if job_var not in os.environ:
            raise ValueError(f"--launcher {launcher} runs inside a job ({job_var} unset): allocate nodes first")
        nodes, ppn = site_layout(n_ranks, ranks_per_node)
        site_env = {"MOSAIC_NODES": str(nodes), "MOSAIC_GPUS_PER_NODE": str(ppn), "MOSAIC_MASTER_PORT": str(port)}
        return ["bash", str(REPO_ROOT / script), *trainer_args], site_env
    if launcher == "mpiexec":
        return [_venv_tool("mpiexec"), "-n", str(n_ranks), *launcher_args, *module], env
    if launcher == "srun":
        return [_venv_tool("srun"), "-n", str(n_ranks), *launcher_args, *module], {}
    if launcher == "torchrun":
        return [py, "-m", "torch.distributed.run", f"--nproc-per-node={n_ranks}", f"--master-port={port}",
                *launcher_args, "-m", "mosaic_hpc.train", *trainer_args], {}  # fmt: skip
    if launcher == "deepspeed":
        script = str(REPO_ROOT / "mosaic_hpc" / "train.py")
        return [_venv_tool("deepspeed"), "--num_gpus", str(n_ranks), "--master_port", str(port),
                *launcher_args, script, *trainer_args], {}  # fmt: skip
    raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")


def run_point(
    args: argparse.Namespace, n_ranks: int, micro: int, data_dir: Path, run_dir: Path, repeat: int
) -> dict[str, Any]:
    """One launch: train ``warmup + steps`` steps on ``n_ranks`` ranks and read its timing."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run: never resume from an earlier point's checkpoint
    run_dir.mkdir(parents=True)
    max_steps = args.warmup + args.steps
    overrides = [
        f"data.micro_batch_size={micro}",
        "train.grad_accum_steps=1",
        "train.log_every=1",
        "train.eval_every=0",
        "train.save_every=0",
        *args.set,
    ]
    settings = [x for o in overrides for x in ("--set", o)]
    config = str(resolve_config(args.config).resolve())
    ds = str(Path(args.ds_config).resolve())
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if args.device == "cpu" and args.threads_per_rank > 0:
        env["OMP_NUM_THREADS"] = env["MOSAIC_OMP_THREADS"] = str(args.threads_per_rank)
    if args.launcher == "local" or args.launcher in SITE_SCRIPTS:
        env.update(
            MOSAIC_DEVICE=args.device,
            MOSAIC_CONFIG=config,
            MOSAIC_DATA=str(data_dir.resolve()),
            MOSAIC_DS_CONFIG=ds,
            MOSAIC_RUN_DIR=str(run_dir.resolve()),
            MOSAIC_RESUME="none",
            MOSAIC_MAX_STEPS=str(max_steps),
            MOSAIC_PYTHON=sys.executable,
        )
        trainer_args = settings
    else:
        paths = ["--config", config, "--data", str(data_dir.resolve()), "--out", str(run_dir.resolve())]
        trainer_args = [*paths, "--deepspeed_config", ds, "--resume", "none", "--max-steps", str(max_steps), *settings]
    argv, extra_env = launch_command(
        args.launcher, n_ranks, trainer_args, args.launcher_args.split(), port, args.ranks_per_node
    )
    env.update(extra_env)
    point: dict[str, Any] = {
        "ranks": n_ranks,
        "micro_batch_size": micro,
        "global_batch": micro * n_ranks,
        "repeat": repeat,
        "run_dir": str(run_dir),
        "load_average_before": load_average(),
    }
    log_path = run_dir / "bench_launch.log"
    t_launch = time.time()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout_s)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    point["wall_s"] = time.time() - t_launch
    point["load_average_after"] = load_average()
    if rc != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        reason = "timed out" if rc == -1 else f"exit status {rc}"
        return {**point, "status": "error", "reason": f"{reason}: {' | '.join(tail)}"[-600:]}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    try:
        point.update(step_timing(records, args.warmup, t_launch))
    except ValueError as err:
        return {**point, "status": "error", "reason": str(err)}
    point["throughput/samples_per_s"] = point["global_batch"] / point["time/step_s"]
    last = next((r for r in reversed(records) if "loss/total" in r), {})
    point["loss/final"] = last.get("loss/total")
    point.update({k: v for k, v in last.items() if k.startswith("memory/")})  # rank 0's peak
    point["status"] = "ok"
    return point


def _median_point(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The median of the repeats of one point (step time and start-up separately)."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return None
    step = median([r["time/step_s"] for r in ok])
    out = {k: ok[0][k] for k in ("ranks", "micro_batch_size", "global_batch")}
    out.update(
        {
            "time/step_s": step,
            "throughput/samples_per_s": out["global_batch"] / step,
            "time/startup_s": median([r["time/startup_s"] for r in ok]),
            "step_s_all_repeats": [r["time/step_s"] for r in ok],
            "load_average_1min": [r["load_average_before"][0] for r in ok if r["load_average_before"]],
            "repeats_ok": len(ok),
            "repeats": len(runs),
        }
    )
    mem = [v for r in ok for k, v in r.items() if k.startswith("memory/")]
    if mem:
        out["memory/peak_gib_rank0"] = max(mem)
    return out


# ---------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    ranks = sorted(set(parse_int_list(args.ranks, "--ranks")))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"--modes must name {' and/or '.join(MODES)}, got {args.modes!r}")
    if args.steps < 2 or args.warmup < 1 or args.repeats < 1:
        raise ValueError("--steps must be >= 2, --warmup >= 1 and --repeats >= 1")
    if args.threads_per_rank < 0 or args.rows < 1 or args.timeout_s <= 0:
        raise ValueError("--threads-per-rank must be >= 0, --rows >= 1 and --timeout-s > 0")
    args.ds_config = resolve_deepspeed_config(args.ds_config)
    cfg = load_bench_config(args.config)
    micro = args.micro_batch or cfg.data.micro_batch_size
    global_batch = args.global_batch or max(ranks) * micro
    if micro < 1 or global_batch < 1:
        raise ValueError("--micro-batch and --global-batch must be >= 1")
    plan = [(m, n, per_rank_batch(m, n, micro, global_batch)) for m in modes for n in ranks]  # validates first
    if args.launcher in SITE_SCRIPTS:
        for n in ranks:
            site_layout(n, args.ranks_per_node)
    out_path = args.out or args.work_dir / "scaling.json"
    plot_path = args.plot or out_path.with_suffix(".png")
    data_dir = args.data
    if data_dir is None:
        data_dir = args.work_dir / "catalog"
        data_dir.mkdir(parents=True, exist_ok=True)
        make_catalog(data_dir / "train.h5", args.rows)
    elif not data_dir.exists():
        raise ValueError(f"--data {data_dir} does not exist")

    report: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "machine": machine_info(),
        "settings": {
            "config": Path(args.config).stem,
            "ranks": ranks,
            "modes": modes,
            "micro_batch": micro,
            "global_batch": global_batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "launcher": args.launcher,
            "ds_config": Path(args.ds_config).name,
            "device": args.device,
            "threads_per_rank": args.threads_per_rank,
            "data": str(args.data) if args.data else f"synthetic ({args.rows} rows, paper lengths)",
        },
        "runs": [],
        "results": {},
    }
    # Interleave repeats over the whole plan so a burst of load on a shared machine hits every
    # point a little instead of one point a lot. Weak and strong points with the same ranks and
    # per-rank batch (e.g. both at one rank when G = B) are one launch, shared by both modes.
    launches = list(dict.fromkeys((n, mb) for _, n, mb in plan))
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in launches}
    for rep in range(args.repeats):
        for n, mb in launches:
            pt = run_point(args, n, mb, data_dir, args.work_dir / f"n{n}-b{mb}-r{rep}", rep)
            runs[(n, mb)].append(pt)
            report["runs"].append(pt)
            msg = (
                f"{pt['time/step_s'] * 1e3:8.1f} ms/step (median), start-up {pt['time/startup_s']:.1f} s"
                if pt["status"] == "ok"
                else pt["reason"]
            )
            print(f"  ranks={n:<3d} per-rank batch={mb:<5d} repeat {rep}: {msg}", file=sys.stderr, flush=True)
    for mode in modes:
        pts = []
        for m, n, mb in plan:
            if m == mode and (p := _median_point(runs[(n, mb)])) is not None:
                pts.append({"mode": mode, **p})
        report["results"][mode] = efficiencies(pts, mode) if pts else []
    report["machine"]["load_average_end"] = load_average()
    write_json(out_path, report)
    if any(report["results"].values()):
        plot(report, plot_path)
        report["plot"] = str(plot_path)
        write_json(out_path, report)
    print(format_markdown(report))
    print(f"\nwrote {out_path}" + (f" and {plot_path}" if "plot" in report else ""), file=sys.stderr)
    failed = [r for r in report["runs"] if r["status"] != "ok"]
    return 1 if failed else 0


# ------------------------------------------------------------------------ plot, markdown


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput against ranks with the ideal line, and efficiency against ranks (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, pts in report["results"].items():
        if not pts:
            continue
        n = [p["ranks"] for p in pts]
        x = [p["throughput/samples_per_s"] for p in pts]
        (line,) = ax_t.plot(n, x, "o-", label=f"{mode} (measured)")
        if mode == "weak":
            ax_t.plot(n, [x[0] * k / n[0] for k in n], "--", color=line.get_color(), alpha=0.5, label="weak ideal")
        ax_e.plot(n, [p["efficiency"] for p in pts], "o-", color=line.get_color(), label=mode)
    s = report["settings"]
    for ax in (ax_t, ax_e):
        ax.set_xlabel("ranks")
        ax.set_xticks(s["ranks"])
        ax.grid(alpha=0.3)
        ax.legend()
    ax_t.set_ylabel("samples / s (all ranks)")
    ax_e.set_ylabel("parallel efficiency")
    ax_e.axhline(1.0, color="grey", lw=0.8)
    ax_e.set_ylim(0, 1.2)
    fig.suptitle(f"{s['config']}, {s['ds_config']}, {s['launcher']} launcher, {report['machine']['host']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = [
    ("mode", "mode", ""),
    ("ranks", "ranks", "d"),
    ("per-rank batch", "micro_batch_size", "d"),
    ("global batch", "global_batch", "d"),
    ("step ms (median)", "step_ms", ".1f"),
    ("samples/s", "throughput/samples_per_s", ".1f"),
    ("efficiency", "efficiency", ".3f"),
    ("start-up s", "time/startup_s", ".1f"),
    ("peak mem GiB (rank 0)", "memory/peak_gib_rank0", ".2f"),
    ("load 1 min", "load", ""),
    ("repeats ok", "repeats_ok", "d"),
]


def format_markdown(report: dict[str, Any]) -> str:
    """Machine line, settings and one table over both scaling modes."""
    m, s = report["machine"], report["settings"]
    rows = []
    for pts in report["results"].values():
        for p in pts:
            rows.append(
                {**p, "step_ms": 1e3 * p["time/step_s"], "load": ", ".join(f"{x:.1f}" for x in p["load_average_1min"])}
            )
    lines = [
        f"- machine: {m.get('gpu') or m['cpu_model']}, {m['n_cores']} cores, host {m['host']}, "
        f"torch {m['torch']}, deepspeed {m.get('deepspeed')}, commit {m['commit']}",
        f"- date (UTC): {m['date_utc']}; load average at start {m['load_average']}, at end {m.get('load_average_end')}",
        f"- config {s['config']}, {s['ds_config']}, launcher {s['launcher']}, device {s['device']}, "
        f"{s['threads_per_rank'] or 'default'} thread(s) per rank, data {s['data']}",
        f"- {s['warmup']} warm-up steps excluded, {s['steps']} timed steps, median of {s['repeats']} repeat(s); "
        "weak: X(N)/(N X(1)); strong: t(1)/(N t(N))",
        *([f"- plot: {report['plot']}"] if "plot" in report else []),
        "",
        markdown_table(rows, COLUMNS),
    ]
    failed = [r for r in report["runs"] if r["status"] != "ok"]
    if failed:
        lines += ["", f"{len(failed)} launch(es) failed:"] + [
            f"- ranks={r['ranks']}, per-rank batch {r['micro_batch_size']}: {r['reason']}" for r in failed
        ]
    return "\n".join(lines)

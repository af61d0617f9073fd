"""From nothing to a trained MOSAIC and its report: catalog, training, Table 1, figures, UMAP.

Stages, each with a status line and a progress bar, all inside --out (RUN):
  1. catalog   mock catalog into RUN/catalog (or --catalog DIR: your own, used as is)
  2. train     the `small` config (configs/small.yaml); checkpoints in RUN/checkpoints
  3. evaluate  Table 1 with baselines (random forest / kNN fitted on the train split) and Figure 2
               on the test split into RUN/eval
  4. embed     UMAP of the hidden states (Fig. 3) into RUN/eval/umap.png (+ .npz)
  5. report    RUN/report.md with Table 1 and all figures

Re-running is cheap: a valid catalog is reused, training resumes from RUN/checkpoints/latest
and is skipped when it already reached its step count; evaluation and UMAP are redone.

Engine (--engine auto): with a CUDA GPU and DeepSpeed installed, training runs as
`python -m mosaic_hpc.train --deepspeed_config configs/zero2.json` in one rank (a subprocess
with RANK=0, WORLD_SIZE=1: no launcher, ssh or hostfile needed). Without a GPU it uses the plain
PyTorch engine in this process: ZeRO has nothing to shard with one rank, and on a 2-core CPU
DeepSpeed's CPU accelerator only adds start-up time. --engine deepspeed forces the DeepSpeed path.

Threads (--threads 0): the cores idle right now (measured over half a second from /proc/stat,
see ``mosaic_hpc.cpu_load``), at least one. PyTorch's OpenMP threads spin at every barrier, so two
threads on two cores that other jobs also use run 3-5x *slower* per step than one thread
(measured on the 2-core development machine); on a free machine all cores are used.

`make run` calls this with --n-galaxies 20000 (about 6 minutes on a free 2-core machine).

Example:
  mosaic-hpc quickstart --out runs/quickstart --n-galaxies 20000
  mosaic-hpc quickstart --out runs/mine --catalog catalogs/dc2 --max-steps 3000
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..config import RunConfig, resolve_config, resolve_deepspeed_config
from ..cpu_load import choose_threads
from ..dist_env import free_port
from .arguments import require_at_least
from .evaluate import add_baseline_arguments, baseline_settings, print_configuration

ENGINES = ("auto", "plain", "deepspeed")
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # on PYTHONPATH of the DeepSpeed subprocess


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default: runs/quickstart)")
    p.add_argument("--n-galaxies", type=int, default=20000, help="mock catalog size, all splits (default: 20000)")
    p.add_argument("--catalog", type=Path, default=None, help="use this catalog directory instead of a mock one")
    p.add_argument(
        "--noise",
        choices=("none", "lsst10"),
        default="none",
        help="mock photometric noise (default: none, like the paper's noise-free synthetic catalog; lsst10 adds "
        "LSST 10-year and SPHEREx all-sky errors, under which most SPHEREx channels are non-detections)",
    )
    p.add_argument("--config", default="small", help="config name in configs/ or a YAML path (default: small)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="steps to train: sets train.max_steps, so the LR schedule follows (= --set train.max_steps=K)",
    )
    p.add_argument("--engine", choices=ENGINES, default="auto", help="training engine (default: auto, see above)")
    p.add_argument("--n-plot", type=int, default=1000, help="galaxies per scatter panel (default: 1000)")
    p.add_argument("--n-embed", type=int, default=1000, help="galaxies in the UMAP panels (default: 1000)")
    p.add_argument("--umap-epochs", type=int, default=200, help="UMAP epochs (default: 200)")
    p.add_argument("--color-by", default="redshift", help="scalar column colouring the UMAP (default: redshift)")
    p.add_argument("--seed", type=int, default=0, help="catalog, training and UMAP seed (default: 0)")
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads for PyTorch (default 0: the idle cores, see below)"
    )
    add_baseline_arguments(p)


@contextlib.contextmanager
def stage(i: int, n: int, title: str) -> Iterator[None]:
    """Status line before and after one stage, with its wall time."""
    print(f"[{i}/{n}] {title} ...", flush=True)
    t0 = time.perf_counter()
    yield
    print(f"[{i}/{n}] {title}: done in {time.perf_counter() - t0:.1f} s", flush=True)


def catalog_problem(data_dir: Path) -> str | None:
    """Why ``data_dir`` is not a usable catalog (train and test splits with statistics), or None."""
    from ..data.catalog import Catalog

    try:
        for split in ("train", "test"):
            if Catalog.open(data_dir, split).n_rows == 0:
                return f"{split} split is empty"
    except (ValueError, OSError) as err:
        return str(err)
    return None


def prepare_catalog(args: argparse.Namespace) -> Path:
    """Stage 1: the user's catalog (checked), a valid existing mock catalog, or a new one."""
    if args.catalog is not None:
        problem = catalog_problem(args.catalog)
        if problem:
            raise ValueError(f"--catalog {args.catalog}: {problem}")
        print(f"  using catalog {args.catalog}")
        return args.catalog
    cat_dir = args.out / "catalog"
    if cat_dir.is_dir() and catalog_problem(cat_dir) is None:
        from ..data.catalog import Catalog, split_exists

        n = sum(Catalog.open(cat_dir, s).n_rows for s in ("train", "val", "test") if split_exists(cat_dir, s))
        note = "" if n == args.n_galaxies else f" (--n-galaxies {args.n_galaxies} ignored: delete it to regenerate)"
        print(f"  reusing {cat_dir}: {n} galaxies{note}")
        return cat_dir
    from ..data.mock import make_mock_catalog

    # An invalid leftover (an interrupted generation) is replaced.
    overwrite = cat_dir.is_dir() and any(cat_dir.iterdir())
    make_mock_catalog(cat_dir, args.n_galaxies, seed=args.seed, noise=args.noise, overwrite=overwrite, progress=True)
    return cat_dir


def finished_steps(run_dir: Path) -> int:
    """Optimizer steps of the run's latest checkpoint (0 without one)."""
    import json

    from ..training.checkpoint import CheckpointManager

    latest = CheckpointManager(run_dir).latest()
    if latest is None:
        return 0
    return int(json.loads((latest / "client_state.json").read_text()).get("step", 0))


def set_aside_other_recipe(run_dir: Path, cfg: RunConfig, keep: tuple[str, ...] = ("catalog",)) -> Path | None:
    """Move a run trained with another recipe out of the way (renamed, never deleted); where it went.

    Why: ``make run`` resumes or reuses ``runs/quickstart``; after an update of the default recipe
    the old run would be reused (or refused on resume) and the report would describe the old
    model. Its files go to ``<run>.replaced-<UTC time>`` and the quickstart trains afresh; the
    entries named in ``keep`` (the mock catalog the quickstart wrote inside the run) stay.
    """
    from ..training.checkpoint import CheckpointManager
    from ..training.resume_check import config_differences

    latest = CheckpointManager(run_dir).latest()
    if latest is None:
        return None
    differences = config_differences(latest, cfg)
    if not differences:
        return None
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    aside.mkdir()
    for entry in sorted(run_dir.iterdir()):
        if entry.name not in keep:
            entry.rename(aside / entry.name)
    shown = ", ".join(differences[:4]) + (f" and {len(differences) - 4} more" if len(differences) > 4 else "")
    print(f"  {run_dir} was trained with another recipe ({shown}): its run moved to {aside}, training afresh")
    return aside


def choose_engine(engine: str) -> str:
    """``auto``: DeepSpeed with a CUDA device and DeepSpeed installed, else the plain engine."""
    if engine != "auto":
        return engine
    from ..devices import choose_device

    has_ds = importlib.util.find_spec("deepspeed") is not None
    return "deepspeed" if has_ds and choose_device().type == "cuda" else "plain"


class ProgressSink:
    """A metrics sink that moves a tqdm bar to the logged step and shows the loss."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="  train", unit="step", dynamic_ncols=True)

    def log(self, record: dict) -> None:
        self.bar.update(int(record["step"]) - self.bar.n)
        if "loss/total" in record:
            self.bar.set_postfix(loss=f"{record['loss/total']:.4f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def train(args: argparse.Namespace, config_path: Path, data_dir: Path, threads: int) -> str | None:
    """Stage 2: train (or resume, or skip when finished) into ``args.out``.

    Returns:
        None when the run reached its step count, else why it stopped early (SIGTERM/SIGUSR1
        or the config's wall-time budget: a checkpoint was saved and a re-run resumes).
    """
    import logging

    from ..config import load_config

    cfg = load_config(config_path)
    target = args.max_steps or cfg.train.max_steps
    set_aside_other_recipe(args.out, cfg)
    done = finished_steps(args.out)
    if done >= target:
        print(f"  training already finished ({done} steps): reusing {args.out / 'checkpoints'}")
        return None
    engine = choose_engine(args.engine)
    resuming = f", resuming at step {done}" if done else ""
    print(f"  config {config_path} ({target} steps, {engine} engine, {threads} thread(s)){resuming}")
    if engine == "deepspeed":
        cmd = [sys.executable, "-m", "mosaic_hpc.train", "--deepspeed_config", str(resolve_deepspeed_config("zero2"))]
        cmd += ["--config", str(config_path), "--data", str(data_dir), "--out", str(args.out), "--resume", "auto"]
        cmd += ["--max-steps", str(target)]
        env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        env["OMP_NUM_THREADS"] = str(threads)
        env["MASTER_PORT"] = str(free_port())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH", "")]))
        rc = subprocess.run(cmd, env=env, check=False).returncode
        if rc == 2:
            raise ValueError("training refused its input (see the message above)")
        if rc != 0:
            raise RuntimeError(f"training exited with status {rc}: {' '.join(cmd)}")
        steps = finished_steps(args.out)
        return None if steps >= target else f"stopped at step {steps} of {target}"
    from ..training.runner import run_training

    # The bar replaces the per-step log lines; warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    result = run_training(
        cfg, data_dir, args.out, resume="auto", max_steps=target, extra_sinks=[ProgressSink(target, done)]
    )
    return f"stopped at step {result.steps} of {target} ({result.reason})" if result.stopped_early else None


def run(args: argparse.Namespace) -> int:
    require_at_least(
        {
            "--n-galaxies": (args.n_galaxies, 2),
            "--n-plot": (args.n_plot, 1),
            "--n-embed": (args.n_embed, 20),
            "--umap-epochs": (args.umap_epochs, 1),
            "--threads": (args.threads, 0),
            "--max-steps": (args.max_steps, 1),
        }
    )
    baseline_settings(args)  # bad sizes fail before any work
    config_path = resolve_config(args.config)  # before any work: a typo should not cost a catalog
    t_start = time.perf_counter()
    n = 5
    with stage(1, n, "catalog"):
        data_dir = prepare_catalog(args)
    import torch

    from ..data.catalog import Catalog
    from ..data.configurations import paper_configurations
    from ..evaluation.embedding import EMBEDDING_DESCRIPTION, scalar_column, write_embedding
    from ..evaluation.metrics import evaluate, table1_markdown, units, write_table1
    from ..evaluation.predictor import load_run
    from ..evaluation.report import ReportImage
    from .evaluate import write_figures_and_report

    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)  # training (plain engine), inference and figures of this process
    print(
        f"  {threads} CPU thread(s) for PyTorch"
        + (f", CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    test = Catalog.open(data_dir, "test")
    scalar_column(test.schema, args.color_by)  # a bad --color-by fails now, not after training
    with stage(2, n, "train"):
        stopped = train(args, config_path, data_dir, threads)
    if stopped:
        print(f"training {stopped}; the checkpoint is saved: run the same command again to resume", file=sys.stderr)
        return 1
    eval_dir = args.out / "eval"
    with stage(3, n, "evaluate (Table 1 with baselines, Figure 2)"):
        predictor = load_run(args.out)
        configs = paper_configurations(predictor.schema)
        if not configs:
            raise ValueError(f"{data_dir}: the catalog cannot express the paper's input configurations")
        baselines = baseline_settings(args, threads)
        fit = Catalog.open(data_dir, "train") if baselines is not None else None
        results = evaluate(
            predictor,
            test,
            configs,
            keep_outputs=True,
            fit_catalog=fit,
            baselines=baselines,
            on_configuration=print_configuration,
        )
        write_table1(results, units(predictor), eval_dir, baselines)
    with stage(4, n, f"embed (UMAP of {min(args.n_embed, test.n_rows)} galaxies)"):
        truth = test.read(0, min(args.n_embed, test.n_rows))
        umap_png, _ = write_embedding(
            predictor,
            truth,
            configs,
            eval_dir / "umap.png",
            args.color_by,
            args.seed,
            args.umap_epochs,
            on_panel=lambda name: print(f"  {name}: done", flush=True),
        )
    with stage(5, n, "report"):
        umap_image = ReportImage("Figure 3: latent space (UMAP)", umap_png, EMBEDDING_DESCRIPTION)
        report = write_figures_and_report(
            predictor,
            results,
            eval_dir,
            args.n_plot,
            data_dir,
            "test",
            baselines,
            (umap_image,),
            args.out / "report.md",
        )
    print()
    print(table1_markdown(results, units(predictor)))
    print(f"report: {report}")
    print(f"total time: {time.perf_counter() - t_start:.0f} s")
    return 0

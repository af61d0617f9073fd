"""`make run` at toy size: catalog -> train -> Table 1 + Figure 2 -> UMAP -> report.md, then a resume.

The same command as `make run`, shrunk (1,500 mock galaxies, 30 steps, UMAP of 150 galaxies with
30 epochs) so it checks the whole pipeline in about a minute on a free 2-core machine (marked slow: the
pipeline tests are skipped by `make test-fast`; the bad-input tests are instant). Without
the mock generator it falls back to the toy catalog through --catalog.
"""

import importlib.util
import re
from pathlib import Path

import pytest
from conftest import REPO

from mosaic_hpc.cli import main

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
HAS_MOCK = importlib.util.find_spec("mosaic_hpc.data.mock") is not None
SMALL = ["--max-steps", "30", "--n-plot", "200", "--n-embed", "150", "--umap-epochs", "30"]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory, toy_catalog_dir):
    run = tmp_path_factory.mktemp("quickstart") / "run"
    source = ["--n-galaxies", "1500"] if HAS_MOCK else ["--catalog", str(toy_catalog_dir)]
    assert main(["quickstart", "--out", str(run), *source, *SMALL]) == 0
    return run


@pytest.mark.slow
def test_report_has_table1_and_images(quickstart_run, capsys):
    report = quickstart_run / "report.md"
    text = report.read_text()
    assert "## Table 1" in text and "| Input configuration |" in text
    for label in ("LSST magnitudes only", "LSST + SFH (0-10 Gyr given)", "Stellar mass only"):
        assert label in text
    assert "sigma_NMAD" in text
    images = IMAGE.findall(text)
    assert len(images) == 2, images  # Figure 2 and the UMAP
    for rel in images:
        assert not Path(rel).is_absolute()
        img = report.parent / rel
        assert img.is_file() and img.stat().st_size > 10_000, rel
        assert img.read_bytes()[:4] == b"\x89PNG"
    assert (quickstart_run / "eval" / "umap.npz").is_file()
    assert (quickstart_run / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_max_steps_sets_the_schedule_length(quickstart_run):
    # --max-steps 30 is train.max_steps 30, the schedule's length included (issue 17, point 2)
    import json

    from mosaic_hpc.config import load_config
    from mosaic_hpc.training.schedule import lr_factor

    cfg = load_config(quickstart_run / "config.yaml").train
    assert cfg.max_steps == 30
    records = [json.loads(line) for line in (quickstart_run / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["optim/lr"] for r in records if "optim/lr" in r}
    assert max(lrs) == 30
    for step, lr in lrs.items():
        assert lr == pytest.approx(cfg.lr * lr_factor(step, cfg), rel=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MOCK, reason="reusing a mock catalog needs the mock generator")
def test_rerun_reuses_catalog_and_training(quickstart_run, capsys):
    capsys.readouterr()
    catalog = quickstart_run / "catalog"
    before = (catalog / "train.h5").stat().st_mtime_ns
    args = ["quickstart", "--out", str(quickstart_run), "--n-galaxies", "1500", *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"reusing {catalog}" in out
    assert "training already finished (30 steps)" in out
    assert (catalog / "train.h5").stat().st_mtime_ns == before
    assert "report:" in out and "total time:" in out


@pytest.mark.slow
def test_user_catalog_skips_generation(quickstart_run, toy_catalog_dir, tmp_path, capsys):
    # --catalog with a finished run: nothing generated, nothing trained, the report is rebuilt.
    source = quickstart_run / "catalog" if HAS_MOCK else toy_catalog_dir
    args = ["quickstart", "--out", str(quickstart_run), "--catalog", str(source), *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"using catalog {source}" in out and "training already finished" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "nope"], "config 'nope' not found"),
        (["--n-embed", "5"], "--n-embed must be >= 20"),
        (["--max-steps", "0"], "--max-steps must be >= 1"),
        (["--color-by", "colour"], "valid columns: redshift, log10_halo_mass, log10_stellar_mass"),
    ],
)
def test_bad_input_exits_2(extra, message, toy_catalog_dir, tmp_path, capsys):
    args = ["quickstart", "--out", str(tmp_path / "run"), "--catalog", str(toy_catalog_dir), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training


def test_missing_user_catalog_exits_2(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "run"), "--catalog", str(tmp_path / "none")]) == 2
    assert "--catalog" in capsys.readouterr().err


def test_configs_resolve_from_repo():
    from mosaic_hpc.commands.quickstart import resolve_config

    assert resolve_config("small") == REPO / "configs" / "small.yaml"
    assert resolve_config(str(REPO / "configs" / "tiny.yaml")) == REPO / "configs" / "tiny.yaml"

"""Benchmark arithmetic: MFU, scaling efficiencies, rates, step timing from JSONL records.

Pure functions with hand-computed answers, so a wrong formula fails here in milliseconds rather
than as an implausible number in RESULTS.md.
"""

from __future__ import annotations

import math
import shlex

import pytest
from conftest import benchmark_script

from mosaic_hpc.bench import arith, machine, presets, report, scaling, throughput


def test_mfu_is_achieved_over_peak():
    assert arith.mfu(396e12, 989e12) == pytest.approx(0.4004, abs=1e-4)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_mfu_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        arith.mfu(bad, 1e12)
    with pytest.raises(ValueError):
        arith.mfu(1e12, bad)


def test_weak_efficiency():
    # 100 samples/s on one rank; 190 on two: 190 / (2 * 100).
    assert arith.weak_efficiency(100.0, 190.0, 2) == pytest.approx(0.95)
    assert arith.weak_efficiency(100.0, 100.0, 1) == pytest.approx(1.0)
    # A study starting at one 4-GPU node: 8 ranks should give twice the 4-rank throughput.
    assert arith.weak_efficiency(400.0, 760.0, 8, base_ranks=4) == pytest.approx(0.95)


def test_strong_efficiency():
    # 1.0 s per step on one rank, 0.55 s on two: 1 / (2 * 0.55).
    assert arith.strong_efficiency(1.0, 0.55, 2) == pytest.approx(1 / 1.1)
    assert arith.strong_efficiency(2.0, 0.5, 8, base_ranks=2) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args",
    [(100.0, 190.0, 0), (100.0, 190.0, 1.5), (0.0, 190.0, 2), (100.0, math.nan, 2), (100.0, 190.0, 2, 4)],
)
def test_efficiencies_reject_bad_input(args):
    with pytest.raises(ValueError):
        arith.weak_efficiency(*args)
    with pytest.raises(ValueError):
        arith.strong_efficiency(*args)


def test_rates():
    r = arith.rates(n_samples=100, seconds=2.0, flops_per_sample=1e12, tokens_per_sample=10)
    assert r["throughput/samples_per_s"] == pytest.approx(50.0)
    assert r["throughput/tokens_per_s"] == pytest.approx(500.0)
    assert r["throughput/tflops"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        arith.rates(100, 0.0, 1e12, 10)


def test_median_and_int_lists():
    assert arith.median([3.0, 1.0, 2.0]) == 2.0
    assert arith.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        arith.median([])
    assert arith.parse_int_list("1, 2,4", "--ranks") == [1, 2, 4]
    for bad in ("", "1,x", "0,2", "-1"):
        with pytest.raises(ValueError, match="--ranks"):
            arith.parse_int_list(bad, "--ranks")


def test_per_rank_batch():
    assert scaling.per_rank_batch("weak", 4, 32, 0) == 32
    assert scaling.per_rank_batch("strong", 4, 32, 128) == 32
    with pytest.raises(ValueError, match="divisible"):
        scaling.per_rank_batch("strong", 3, 32, 128)
    with pytest.raises(ValueError):
        scaling.per_rank_batch("diagonal", 2, 32, 64)


def _records(times: list[float]) -> list[dict]:
    return [{"step": k + 1, "time/unix": t, "loss/total": 1.0} for k, t in enumerate(times)]


def test_step_timing_median_after_warmup_and_startup():
    # Launch at t=100; step 1 ends at 110 (start-up and a slow first step); then 0.5 s steps with
    # one 3 s hiccup (another job), which the median ignores.
    times = [110.0, 111.0, 111.5, 112.0, 115.0, 115.5, 116.0]
    out = scaling.step_timing([*_records(times), {"step": 3, "time/unix": 0.0, "val/all": 1.0}], 2, 100.0)
    assert out["time/step_s"] == pytest.approx(0.5)
    assert out["timed_steps"] == 5
    assert out["time/step_s_mean"] == pytest.approx(5.0 / 5)
    assert out["time/startup_s"] == pytest.approx(110.0 - 100.0 - 0.5)


def test_step_timing_needs_records_past_warmup():
    with pytest.raises(ValueError):
        scaling.step_timing(_records([1.0, 2.0]), 2, 0.0)
    with pytest.raises(ValueError):
        scaling.step_timing([], 1, 0.0)


def test_efficiencies_from_points():
    weak = scaling.efficiencies(
        [
            {"ranks": 2, "throughput/samples_per_s": 180.0, "time/step_s": 1.0},
            {"ranks": 1, "throughput/samples_per_s": 100.0, "time/step_s": 1.0},
        ],
        "weak",
    )
    assert [p["ranks"] for p in weak] == [1, 2]
    assert weak[1]["efficiency"] == pytest.approx(0.9)
    strong = scaling.efficiencies(
        [
            {"ranks": 1, "throughput/samples_per_s": 1.0, "time/step_s": 1.0},
            {"ranks": 2, "throughput/samples_per_s": 1.0, "time/step_s": 0.625},
        ],
        "strong",
    )
    assert strong[1]["efficiency"] == pytest.approx(0.8)


def test_parse_compare_and_mode():
    assert throughput.parse_compare("all") == list(throughput.COMPARISONS)
    assert throughput.parse_compare("none") == []
    assert throughput.parse_compare("zero,sdpa") == ["sdpa", "zero"]
    with pytest.raises(ValueError, match="unknown comparison"):
        throughput.parse_compare("zero,warp")
    assert throughput.mode_of(presets.load_bench_config("small").model) == "patched"
    assert throughput.mode_of(presets.load_bench_config("base").model) == "paper"


def test_markdown_table_formats_and_marks_missing():
    table = report.markdown_table(
        [{"a": "x", "b": 1.23456}, {"a": "y"}], [("A", "a", ""), ("B", "b", ".2f")]
    ).splitlines()
    assert table[0] == "| A | B |"
    assert table[2] == "| x | 1.23 |"
    assert table[3] == "| y | - |"


def test_write_json_replaces_non_finite(tmp_path):
    import json

    path = report.write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.0, math.inf]})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None]}


def test_site_layout_uses_whole_nodes():
    assert scaling.site_layout(2, 4) == (1, 2)
    assert scaling.site_layout(4, 4) == (1, 4)
    assert scaling.site_layout(16, 4) == (4, 4)
    with pytest.raises(ValueError, match="whole number"):
        scaling.site_layout(6, 4)
    with pytest.raises(ValueError):
        scaling.site_layout(2, 0)


def test_site_launcher_refuses_to_run_outside_a_job(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ValueError, match="inside a job"):
        scaling.launch_command("perlmutter", 8, [], [], 29500)


def test_format_results_records_one_section_and_keeps_others(tmp_path):
    fr = benchmark_script("format_results")
    results = tmp_path / "RESULTS.md"
    fr.record("## Mine\n\nold\n", "## Mine", results)
    results.write_text(results.read_text() + "\n## Theirs\n\nkeep\n")
    fr.record("## Mine\n\nnew\n", "## Mine", results)
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert "new" in text and "old" not in text and "## Theirs\n\nkeep" in text
    with pytest.raises(ValueError, match="not a benchmark report"):
        fr.format_report({"benchmark": "nonsense"})


def test_best_of_sweep_ignores_other_kinds_and_failures():
    entries = [
        {"kind": "flops", "status": "ok", "config": "base"},  # no throughput: must be skipped
        {"kind": "sweep", "status": "ok", "config": "base", "throughput/samples_per_s": 2.0, "micro_batch_size": 1},
        {"kind": "sweep", "status": "ok", "config": "base", "throughput/samples_per_s": 3.0, "micro_batch_size": 2},
        {"kind": "sweep", "status": "oom", "config": "base", "micro_batch_size": 4},
        {"kind": "modes", "status": "ok", "config": "base", "throughput/samples_per_s": 9.0, "micro_batch_size": 2},
    ]
    assert throughput.best_of_sweep(entries, "base")["micro_batch_size"] == 2
    assert throughput.best_of_sweep(entries, "configs/small.yaml") is None


def test_recorded_command_can_be_retyped(monkeypatch):
    # RESULTS.md keeps the command; an empty or spaced argument must survive copy and paste
    argv = ["benchmarks/photoz_dc2.py", "--finetune-mask", "", "--out", "runs/my dir"]
    monkeypatch.setattr("sys.argv", argv)
    assert shlex.split(machine.command_line()) == ["photoz_dc2.py", *argv[1:]]
    monkeypatch.setattr("sys.argv", ["/x/mosaic_hpc/cli.py", "bench", "throughput"])
    assert machine.command_line() == "mosaic-hpc bench throughput"

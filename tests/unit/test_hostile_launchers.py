"""Launcher numbers from the environment never reach shell arithmetic unchecked (issue 15, item 12).

Bash evaluates a variable's text as an expression inside ``(( ))``, ``$(( ))`` and ``[[ -lt ]]``,
so ``MOSAIC_GPUS_PER_NODE='HOME[$(cmd)]'`` ran ``cmd``, even with ``DRY_RUN=1``. Every such
variable is now checked to be a whole number first, with a one-line error naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_launchers_static import SLURM_JOB, clean_env, run

VARIABLES = ("MOSAIC_GPUS_PER_NODE", "MOSAIC_NODES", "MOSAIC_SIGNAL_SECS", "MOSAIC_MAX_REQUEUES")


def injection(marker: Path) -> str:
    return f"HOME[$(touch {marker})]"


@pytest.mark.parametrize("variable", VARIABLES)
@pytest.mark.parametrize(
    "script, scheduler",
    [
        ("local.sh", {}),
        ("perlmutter.sh", SLURM_JOB),
        ("perlmutter.sh", {}),  # a login node: builds the sbatch line
        ("polaris.pbs", {"PBS_JOBID": "1.polaris", "PBS_NODEFILE": "/dev/null", "MOSAIC_CONDA_ENV": ""}),
    ],
    ids=["local", "perlmutter-job", "perlmutter-login", "polaris-job"],
)
def test_an_expression_in_a_number_runs_nothing(tmp_path, script, scheduler, variable):
    marker = tmp_path / "PWNED"
    env = clean_env(DRY_RUN="1", MOSAIC_DS_CONFIG="none", **scheduler, **{variable: injection(marker)})
    proc = run(script, env=env)
    assert proc.returncode != 0, proc.stdout
    assert f"error: {variable}='{injection(marker)}' must be a whole number" in proc.stderr
    assert not marker.exists()


def test_gpu_affinity_checks_its_numbers(tmp_path):
    marker = tmp_path / "PWNED"
    env = clean_env(SLURM_LOCALID="0", MOSAIC_GPUS_PER_NODE=injection(marker))
    proc = run("gpu_affinity.sh", "true", env=env)
    assert proc.returncode == 1 and "must be whole numbers" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("value, message", [("-2", "must be a whole number"), ("0", "must be >= 1")])
def test_counts_below_their_minimum_are_refused(value, message):
    proc = run("local.sh", env=clean_env(DRY_RUN="1", MOSAIC_GPUS_PER_NODE=value))
    assert proc.returncode != 0 and "MOSAIC_GPUS_PER_NODE" in proc.stderr and message in proc.stderr

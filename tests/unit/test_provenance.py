"""The commit a result records (mosaic_hpc/provenance.py) and the command it was run with."""

import shutil
import subprocess
from pathlib import Path

import pytest

import mosaic_hpc
from mosaic_hpc import provenance
from mosaic_hpc.bench import machine


def _git(repo, *args):
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_commit_is_marked_when_the_tree_has_uncommitted_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("GIT_COMMIT", "from-the-job")  # a checkout's own commit wins
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert provenance.git_commit() == sha.stdout.strip()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.git_commit() == sha.stdout.strip() + " (with uncommitted changes)"


def test_outside_a_checkout_the_commit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)  # no .git here (a copy on a batch node)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    assert provenance.git_commit() == "abc1234"
    monkeypatch.delenv("GIT_COMMIT")
    assert provenance.git_commit() == "unknown"


def test_a_package_module_run_with_python_m_is_recorded_so(monkeypatch):
    module_file = str(machine.PACKAGE / "bench" / "dataloader.py")
    monkeypatch.setattr("sys.argv", [module_file, "--rows", "10", "--work-dir", "runs/my dir"])
    assert machine.command_line() == "python -m mosaic_hpc.bench.dataloader --rows 10 --work-dir 'runs/my dir'"
    assert machine.PACKAGE == Path(mosaic_hpc.__file__).resolve().parent

"""Heavy or optional dependencies are imported by exactly one module each, and lazily.

Users install the catalog tools without DeepSpeed, and ``mosaic-hpc --help`` must not pay for
torch or MPI start-up. Every module must import on its own (no circular imports).
"""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mosaic_hpc

PKG = Path(mosaic_hpc.__file__).parent
OWNERS = {
    "deepspeed": {"training/deepspeed_engine.py", "train.py"},
    "mpi4py": {"data/reader.py", "data/mpi.py", "data/mock/generator.py", "data/mock/mpi.py"},
    "wandb": {"training/wandb_sink.py"},
    "umap": {"evaluation/embedding.py"},
}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("dep", sorted(OWNERS))
def test_optional_dependency_has_one_owner_and_is_lazy(dep):
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if dep in _all_imports(path):
            assert rel in OWNERS[dep], f"{rel} imports {dep}; only {sorted(OWNERS[dep])} may"
            assert dep not in _top_level_imports(path), f"{rel} imports {dep} at module level"


def test_every_module_imports_on_its_own():
    for mod in pkgutil.walk_packages([str(PKG)], prefix="mosaic_hpc."):
        if mod.name.endswith("train") and not mod.ispkg and mod.name == "mosaic_hpc.train":
            continue  # a script entry point (parses argv at import under some launchers)
        importlib.import_module(mod.name)


def test_cli_help_does_not_import_torch():
    code = "import sys; from mosaic_hpc.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
